pub mod netlink;
pub mod netns;
pub mod ipam;
pub mod names;
pub mod model;
pub mod state;
pub mod firewall;
pub mod sysctl;
