//! End-to-end tests: the real `ignis` binary, real CPython and Bun, real HTTP.

mod async_invocations;
mod cli;
mod console;
mod function_urls;
mod harness;
mod instances;
mod lifecycle;
mod logs;
mod mapping;
mod metering;
mod network;
mod persistence;
mod rootless;
mod sandbox;
mod scaling;
mod schedules;
mod security;
mod seeds;
mod server_limits;
mod validation;
