pub mod netlink;
pub mod netns;
pub mod ipam;
pub mod names;
