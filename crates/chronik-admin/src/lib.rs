//! The operator's API: generated gRPC code for `proto/admin.proto`. The broker serves it;
//! the `chronik-admin` binary calls it. [`cli`] is that binary's command line, [`output`]
//! what it prints.

pub mod cli;
pub mod output;

/// Generated gRPC code for `proto/admin.proto`.
pub mod pb {
    #![allow(clippy::all)]
    tonic::include_proto!("chronik.admin");
}
