//! Training: the official flow-matching objective ([`objective`]) and the training state
//! ([`trainer`]: AdamW, EMA, freezing, checkpoints, resume), with AdamW fused on the CPU
//! ([`FusedAdamW`]).

mod adamw;
mod init;
pub mod objective;
pub mod trainer;

pub use adamw::{AdamWSettings, FusedAdamW};
pub use init::{materialize, seeded_init};
pub use trainer::{StepStats, TrainSettings, Trainer};
