//! End-to-end tests: the real `ignis` binary, real CPython and Bun, real HTTP.

mod answers;
mod async_invocations;
mod bad_input;
mod cli;
mod console;
mod deploy_races;
mod destinations;
mod function_urls;
mod harness;
mod instances;
mod lifecycle;
mod logs;
mod mapping;
mod metering;
mod network;
mod openapi;
mod persistence;
mod prometheus;
mod rootless;
mod sandbox;
mod scaling;
mod schedules;
mod security;
mod seeds;
mod validation;
