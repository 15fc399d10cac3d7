//! This node's side of the validation survey: the answers to the probes a surveyor
//! (`halo-survey`) sends ([`answer`]).

pub mod answer;
