//! The gRPC codec of Herald's services: prost's, except that a request that
//! does not decode (invalid UTF-8 in a string field, a truncated message, a
//! wrong wire type) is the caller's error, `INVALID_ARGUMENT` naming the
//! field prost names, rather than tonic's default `INTERNAL`.

use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// [`ProstCodec`] with decode failures reported as `INVALID_ARGUMENT`.
#[derive(Debug, Clone, Default)]
pub struct StrictCodec<T, U>(ProstCodec<T, U>);

impl<T, U> Codec for StrictCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder(self.0.decoder())
    }
}

/// Decodes like [`ProstDecoder`]; a message that does not decode is the
/// sender's fault.
#[derive(Debug, Clone)]
pub struct StrictDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(caller_error)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// prost's decode errors come back as `INTERNAL`; they are the caller's.
fn caller_error(status: Status) -> Status {
    if status.code() == Code::Internal {
        Status::invalid_argument(format!(
            "the request is not a valid protobuf message ({}); string fields must be valid UTF-8",
            status.message()
        ))
    } else {
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_failures_are_invalid_argument() {
        let s = caller_error(Status::internal(
            "failed to decode Protobuf message: PublishRequest.payload: invalid string value: data is not UTF-8 encoded",
        ));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(
            s.message().contains("PublishRequest.payload"),
            "{}",
            s.message()
        );
        assert_eq!(caller_error(Status::cancelled("x")).code(), Code::Cancelled);
    }
}
