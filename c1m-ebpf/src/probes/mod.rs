//! One file per kernel hook. Each program stays thin: it decodes its
//! hook's arguments and hands a plain value to the shared logic.

mod accept_exit;
mod cgroup_attach_task;
mod feature_checks;
mod inet_sock_set_state;
mod iter_context;
mod overview;
mod scans;
mod task_newtask;
