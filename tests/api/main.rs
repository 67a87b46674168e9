//! Integration tests: the real application on port 0, a fresh database, a fake external
//! system on port 0, all over HTTP. One binary so it compiles and links once.

mod helpers;

mod auth;
mod auth_oauth2;
mod cli;
mod cluster;
mod cluster_run;
mod connectors;
mod console;
mod durability;
mod governance;
mod inbound;
mod nats;
mod openapi;
mod operations;
mod seeds;
mod vendors;
mod stores;
mod outbound;
mod supervision;
mod tls;
mod twoway;
