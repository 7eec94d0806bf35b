//! Training: the official flow-matching objective ([`objective`]).

pub mod objective;
