//! Training: the official flow-matching objective ([`objective`]) and the training state
//! ([`trainer`]: AdamW, EMA, freezing, checkpoints, resume).

pub mod objective;
pub mod trainer;

pub use trainer::{StepStats, TrainSettings, Trainer};
