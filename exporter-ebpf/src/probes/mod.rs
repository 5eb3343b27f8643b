//! One file per hook. Each program counts its hit first (`maps::hit`).

mod hpack_write_field;
mod http2_process_headers;
mod http2_response_headers;
mod http2_write_res_headers;
mod tls_close;
mod tls_read;
mod tls_write;
