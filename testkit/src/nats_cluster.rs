//! A three-node JetStream cluster on loopback, owned by one test: each node a
//! real `nats-server -js` with its own client port, cluster (route) port and
//! store folder, routed to the other two. A node can be SIGKILLed and started
//! again on the same ports and store, as a machine that dies and comes back.

use std::time::{Duration, Instant};

use crate::{Error, nats::NatsServer, net};

/// How long the cluster may take to elect its JetStream meta leader.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The nodes of one cluster.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

/// The nats-server config of node `i` of a cluster whose route ports are `routes`.
fn node_config(name: &str, i: usize, routes: &[u16]) -> String {
    let others: Vec<String> = routes
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, p)| format!("\"nats-route://127.0.0.1:{p}\""))
        .collect();
    format!(
        "server_name: {name}-n{i}\n\
         jetstream {{ max_memory_store: 64MB, max_file_store: 2GB }}\n\
         cluster {{\n  name: {name}\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
        routes[i],
        others.join(", ")
    )
}

impl NatsCluster {
    /// Starts `n` nodes (3 for an R3 stream) and waits until JetStream answers.
    pub async fn start(n: usize) -> Self {
        Self::try_start(n).await.unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn try_start(n: usize) -> Result<Self, Error> {
        let clients: Vec<u16> = (0..n)
            .map(|_| net::try_free_port())
            .collect::<Result<_, _>>()?;
        let routes: Vec<u16> = (0..n)
            .map(|_| net::try_free_port())
            .collect::<Result<_, _>>()?;
        let mut nodes = Vec::with_capacity(n);
        for (i, port) in clients.iter().enumerate() {
            let text = node_config("govledger-test", i, &routes);
            nodes.push(NatsServer::try_start_at(*port, &text).await?);
        }
        let cluster = Self { nodes };
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// Every node's URL, comma-separated (what `--nats-url` and the
    /// clients take for a cluster).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// Waits until JetStream answers account requests through every running
    /// node (the meta leader is elected and each node knows it).
    pub async fn wait_ready(&self) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for node in self.nodes.iter().filter(|n| n.pid().is_some()) {
            loop {
                let ok = match node.try_client().await {
                    Ok(c) => async_nats::jetstream::new(c).query_account().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(Error::Failed(format!(
                        "the JetStream cluster did not become ready within {} s (node {})",
                        READY_TIMEOUT.as_secs(),
                        node.url()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// A client that knows every node (it fails over between them).
    pub async fn client(&self) -> async_nats::Client {
        let addrs: Vec<async_nats::ServerAddr> = self
            .urls()
            .iter()
            .map(|u| u.parse().unwrap_or_else(|e| panic!("{u}: {e}")))
            .collect();
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(addrs)
            .await
            .unwrap_or_else(|e| panic!("connecting to the cluster: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_routes_to_the_others() {
        let c = node_config("t", 1, &[7001, 7002, 7003]);
        assert!(c.contains("server_name: t-n1"), "{c}");
        assert!(c.contains("listen: 127.0.0.1:7002"), "{c}");
        assert!(
            c.contains("nats-route://127.0.0.1:7001") && c.contains("nats-route://127.0.0.1:7003"),
            "{c}"
        );
        assert!(!c.contains("nats-route://127.0.0.1:7002"), "{c}");
    }
}
