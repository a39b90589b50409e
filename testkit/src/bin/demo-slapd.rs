//! `demo-slapd USERS`: a real `slapd` for the quick-start demo
//! (`scripts/demo.sh`), the same harness the tests use: its own config
//! folder and port, `USERS` people `u0…` (employeeNumber `E000000…`, all
//! active) and a group `vpn` of the first five. Prints the server's URL on
//! one line, then serves until SIGTERM or SIGINT; slapd stops with it.

use govledger_testkit::slapd::Slapd;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let users: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(20);
    let bin = govledger_testkit::slapd::slapd_bin()?;
    let slapd = Slapd::try_start(&bin, &Default::default())?;
    slapd.try_add_users("u", users)?;
    let vpn: Vec<String> = (0..users.min(5)).map(|i| format!("u{i}")).collect();
    slapd.try_add_group("vpn", &vpn)?;
    println!("{}", slapd.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(slapd);
    Ok(())
}
