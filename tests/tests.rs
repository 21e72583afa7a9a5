//! The integration tests, in one binary (as ripgrep's are): one module per
//! subject, and `common`, the sandbox every test that reaches the kernel
//! runs in. One binary links the harness once and lets the tests of every
//! subject run side by side.

mod common;

mod bad_input;
mod cli;
mod cni;
mod dns;
mod docker;
mod docs;
mod kernel_errors;
mod lab;
mod lan;
mod layers;
mod lifecycle;
mod netavark;
mod overlay;
mod podman;
mod ports;
mod protection;
mod reliability;
mod topology;
mod trace;
mod tutorial;
mod ui;
