//! `wisp namespace create|ls|rm|rotate-key`: tenants and their keys.

use super::ClientOpts;
use crate::client::Client;
use anyhow::Result;
use clap::{Args, Subcommand};
use http::Method;

/// Manage namespaces (the admin token, except `rotate-key` of one's own).
#[derive(Args, Debug)]
pub struct NamespaceCommand {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    client: ClientOpts,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Create a namespace and print its key, `uuid:key` (shown only now).
    Create {
        /// 1-64 characters of [a-zA-Z0-9_.@-], starting with a letter or digit.
        name: String,
    },
    /// List namespaces.
    Ls,
    /// Remove a namespace with its functions, actions, triggers, rules and records.
    Rm {
        /// The namespace.
        name: String,
    },
    /// Issue a new key for a namespace and print it; the old key stops working.
    RotateKey {
        /// The namespace.
        name: String,
    },
}

impl NamespaceCommand {
    /// Run.
    pub async fn execute(self) -> Result<i32> {
        let c = Client::new(&self.client.server, self.client.token.clone());
        match &self.action {
            Action::Create { name } => {
                let body = serde_json::to_vec(&serde_json::json!({ "name": name }))?;
                let v = c
                    .send(
                        Method::POST,
                        "/v1/namespaces",
                        &[("content-type", "application/json")],
                        body,
                    )
                    .await?
                    .ok()?
                    .json()?;
                self.print_key(&v);
            }
            Action::RotateKey { name } => {
                let v = c
                    .send(
                        Method::POST,
                        &format!("/v1/namespaces/{name}/key"),
                        &[],
                        Vec::new(),
                    )
                    .await?
                    .ok()?
                    .json()?;
                self.print_key(&v);
            }
            Action::Ls => {
                let v = c.get("/v1/namespaces").await?.ok()?.json()?;
                if self.client.json {
                    println!("{v}");
                    return Ok(0);
                }
                println!("{:<32} {:<36}", "NAME", "KEY UUID");
                for n in v["namespaces"].as_array().cloned().unwrap_or_default() {
                    println!(
                        "{:<32} {:<36}",
                        n["name"].as_str().unwrap_or("?"),
                        n["uuid"]
                            .as_str()
                            .unwrap_or("(no key: the admin token only)")
                    );
                }
            }
            Action::Rm { name } => {
                c.send(
                    Method::DELETE,
                    &format!("/v1/namespaces/{name}"),
                    &[],
                    Vec::new(),
                )
                .await?
                .ok()?;
                if !self.client.json {
                    println!("removed namespace {name}");
                }
            }
        }
        Ok(0)
    }

    fn print_key(&self, v: &serde_json::Value) {
        if self.client.json {
            println!("{v}");
        } else {
            // The one line scripts take: `uuid:key`, as `wsk property set --auth` wants it.
            println!("{}", v["auth"].as_str().unwrap_or("?"));
            eprintln!(
                "namespace {}: keep this key, it is not shown again \
                 (wisp --token KEY, or wsk property set --auth KEY)",
                v["namespace"].as_str().unwrap_or("?")
            );
        }
    }
}
