//! The gRPC codec of the `Ledger` service: tonic's prost codec, except that a
//! request whose bytes are not its protobuf message is `INVALID_ARGUMENT` (the
//! client sent it; tonic's default says `INTERNAL`, which reads as a server
//! fault and invites a retry of the same bytes).

use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Characters of prost's decode error a status message keeps, at most.
pub const DECODE_DETAIL_CHARS_MAX: usize = 160;

/// [`ProstCodec`] with decode failures as `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct LedgerCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for LedgerCodec<T, U> {
    fn default() -> Self {
        Self(ProstCodec::default())
    }
}

impl<T, U> Codec for LedgerCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = LedgerDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        LedgerDecoder(self.0.decoder())
    }
}

/// [`ProstDecoder`] whose every failure is a malformed message.
#[derive(Debug)]
pub struct LedgerDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for LedgerDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|s| malformed(s.message()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// The status of a message that does not decode; prost's reason names the
/// field and the fault, never the bytes, and is cut to a bound anyway.
pub fn malformed(reason: &str) -> Status {
    let reason: String = reason.chars().take(DECODE_DETAIL_CHARS_MAX).collect();
    Status::invalid_argument(format!(
        "the message is not valid protobuf for this RPC ({reason}); send the request message the RPC names in proto/govledger/v1/api.proto"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decode_failure_is_invalid_argument_and_short() {
        let s = malformed(&"x".repeat(10_000));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(
            s.message().len() < DECODE_DETAIL_CHARS_MAX + 200,
            "{}",
            s.message()
        );
    }
}
