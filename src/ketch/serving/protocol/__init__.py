"""Wire codecs: V1 and V2 (Open Inference Protocol) REST, and the gRPC messages."""
