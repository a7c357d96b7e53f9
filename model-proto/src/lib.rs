//! # oxbeam-model: the pipeline model every Oxbeam crate speaks
//!
//! This crate owns the interface facts Oxbeam shares with Apache Beam
//! portability, and nothing that executes pipelines:
//!
//! - [`proto`]: messages and tonic services compiled from Oxbeam's own `.proto`
//!   files (packages `org.apache.beam.model.{pipeline,fn_execution,job_management,expansion}.v1`),
//!   wire-compatible with Beam's. Short aliases: [`pipeline`], [`fn_execution`],
//!   [`job_management`], [`expansion`].
//! - [`urns`]: every URN and constant declared through a `beam_urn` /
//!   `beam_constant` enum option, generated at build time from the protos.
//!   No other crate writes a Beam URN literal.
//! - [`coders`]: Beam's standard coders (nested and outer contexts), used by
//!   runners to move encoded bundles and by SDKs to encode values: low-level
//!   wire functions, a zero-copy windowed-value fast path, and a dynamic
//!   [`coders::Coder`] tree built from a pipeline's coder protos.
//! - [`window`]: timestamps, windows and pane info, with Beam's encodings.
//! - [`descriptor_set`]: the compiled `FileDescriptorSet`, for reflection and
//!   for the wire-compatibility test against the `apache-beam` package.
//!
//! ```
//! use oxbeam_model::{pipeline, urns};
//! let spec = pipeline::FunctionSpec {
//!     urn: urns::standard_p_transforms::primitives::IMPULSE.to_string(),
//!     payload: Default::default(),
//! };
//! assert_eq!(spec.urn, "beam:transform:impulse:v1");
//! ```

pub mod coders;
pub mod window;

/// Generated protobuf messages and gRPC services, nested by proto package.
#[allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]
pub mod proto {
    /// Oxbeam's own model additions (package `oxbeam.model.v1`).
    pub mod oxbeam {
        /// `oxbeam.model`.
        pub mod model {
            /// Version 1.
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/oxbeam.model.v1.rs"));
            }
        }
    }
    /// `org.*` proto packages.
    pub mod org {
        /// `org.apache.*`.
        pub mod apache {
            /// `org.apache.beam.*`.
            pub mod beam {
                /// `org.apache.beam.model.*`.
                pub mod model {
                    /// Runner API: pipelines, transforms, coders, windowing, metrics, schemas.
                    pub mod pipeline {
                        /// Version 1.
                        pub mod v1 {
                            include!(concat!(
                                env!("OUT_DIR"),
                                "/org.apache.beam.model.pipeline.v1.rs"
                            ));
                        }
                    }
                    /// Fn API: control, data, state, logging, provision, worker pool.
                    pub mod fn_execution {
                        /// Version 1.
                        pub mod v1 {
                            include!(concat!(
                                env!("OUT_DIR"),
                                "/org.apache.beam.model.fn_execution.v1.rs"
                            ));
                        }
                    }
                    /// Job API and artifact staging/retrieval.
                    pub mod job_management {
                        /// Version 1.
                        pub mod v1 {
                            include!(concat!(
                                env!("OUT_DIR"),
                                "/org.apache.beam.model.job_management.v1.rs"
                            ));
                        }
                    }
                    /// Interactive API: the TestStream service.
                    pub mod interactive {
                        /// Version 1.
                        pub mod v1 {
                            include!(concat!(
                                env!("OUT_DIR"),
                                "/org.apache.beam.model.interactive.v1.rs"
                            ));
                        }
                    }
                    /// Expansion service for cross-language transforms.
                    pub mod expansion {
                        /// Version 1.
                        pub mod v1 {
                            include!(concat!(
                                env!("OUT_DIR"),
                                "/org.apache.beam.model.expansion.v1.rs"
                            ));
                        }
                    }
                }
            }
        }
    }
}

pub use proto::org::apache::beam::model::expansion::v1 as expansion;
pub use proto::org::apache::beam::model::fn_execution::v1 as fn_execution;
pub use proto::org::apache::beam::model::interactive::v1 as interactive;
pub use proto::org::apache::beam::model::job_management::v1 as job_management;
pub use proto::org::apache::beam::model::pipeline::v1 as pipeline;
pub use proto::oxbeam::model::v1 as oxbeam;

/// URNs and constants from the protos' `beam_urn` / `beam_constant` options.
///
/// Modules follow the proto enum nesting in snake case, e.g.
/// `urns::standard_p_transforms::primitives::PAR_DO` is `beam:transform:pardo:v1`.
#[allow(missing_docs)]
pub mod urns {
    include!(concat!(env!("OUT_DIR"), "/urns.rs"));
}

/// The encoded `FileDescriptorSet` of every proto this crate compiles,
/// `beam_urn` and other custom options included.
pub fn descriptor_set() -> &'static [u8] {
    include_bytes!(concat!(env!("OUT_DIR"), "/oxbeam_descriptor_set.bin"))
}
