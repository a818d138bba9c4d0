//! The supervisor of ohlcv-collector: starts every child, restarts the ones
//! that die, and executes the commands UI clients give.
//!
//! - [`policy`]: when a dead child is restarted (pure bookkeeping);
//! - [`supervisor`]: the actor, its children and its commands;
//! - [`control`]: the [`Control`](ohlcv_actors::control::Control)
//!   implementation the gateway calls.

mod abandoned;
pub mod control;
pub mod policy;
pub mod supervisor;

pub use abandoned::MAX_ABANDONED_PER_CHILD;
pub use control::{SupervisorControl, TokenCell};
pub use supervisor::{
    load_config, FreezeChild, Shutdown, Supervisor, SupervisorSetup, SHUTDOWN_BUDGET,
};
