//! Namespaces with their own keys across `/v1` and the invoke routes, and
//! the `wisp namespace` commands.

use crate::support::*;
use http::Method;
use std::process::Command;

const TOKEN: &str = "admin-token-for-namespaces";

fn wisp(s: &Server, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(wisp_bin())
        .args(args)
        .env("WISP_SERVER", &s.url)
        .env("WISP_TOKEN", token)
        .env_remove("WISP_NAMESPACE")
        .output()
        .unwrap()
}

/// `wisp namespace create NAME`: its one stdout line is `uuid:key`.
fn create(s: &Server, name: &str) -> String {
    let o = wisp(s, TOKEN, &["namespace", "create", name]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let key = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let (uuid, secret) = key.split_once(':').expect("uuid:key");
    assert_eq!((uuid.len(), secret.len()), (36, 64), "{key}");
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_key_sees_and_touches_only_its_namespace() {
    let s = Server::with(&["--token", TOKEN], &[]);
    let admin = s.client_with_token(TOKEN);
    let key_a = create(&s, "team-a");
    let key_b = create(&s, "team-b");
    let (a, b) = (s.client_with_token(&key_a), s.client_with_token(&key_b));

    // The admin's unscoped routes stay on `default`, as before namespaces.
    deploy_guest(&admin, "hello", "hello").await;
    // A key's unscoped routes are its own namespace.
    let r = deploy(&a, "echo", &read_guest("echo"), serde_json::json!({})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json().unwrap()["namespace"], "team-a");
    let names = |v: serde_json::Value| -> Vec<String> {
        v["functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                format!(
                    "{}/{}",
                    f["namespace"].as_str().unwrap(),
                    f["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        names(get_json(&admin, "/v1/functions").await),
        ["default/hello"]
    );
    assert_eq!(names(get_json(&a, "/v1/functions").await), ["team-a/echo"]);
    assert_eq!(
        names(get_json(&a, "/v1/namespaces/_/functions").await),
        ["team-a/echo"]
    );
    assert_eq!(
        names(get_json(&b, "/v1/functions").await),
        Vec::<String>::new()
    );
    assert_eq!(
        names(get_json(&admin, "/v1/namespaces/team-a/functions").await),
        ["team-a/echo"]
    );

    // B can neither see nor change A's function.
    for (m, path) in [
        (Method::GET, "/v1/namespaces/team-a/functions/echo"),
        (Method::DELETE, "/v1/namespaces/team-a/functions/echo"),
        (Method::GET, "/v1/namespaces/team-a/functions"),
        (Method::GET, "/v1/namespaces/default/functions"),
    ] {
        let r = b.send(m.clone(), path, &[], Vec::new()).await.unwrap();
        assert_eq!(
            (r.status.as_u16(), error_code(&r)),
            (403, "forbidden".into()),
            "{m} {path}"
        );
    }
    assert_eq!(b.get("/v1/functions/echo").await.unwrap().status, 404);
    // Namespaces are the admin's to manage.
    assert_eq!(b.get("/v1/namespaces").await.unwrap().status, 403);
    let r = b
        .send(Method::POST, "/v1/namespaces", &[], r#"{"name":"x"}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    // A namespace that does not exist is a 404 even for the admin.
    assert_eq!(
        admin
            .get("/v1/namespaces/nope/functions")
            .await
            .unwrap()
            .status,
        404
    );

    // Invoke routes: /fn/{name} is `default`, /ns/{ns}/fn/{name} the others.
    let r = s
        .client()
        .send(Method::POST, "/ns/team-a/fn/echo", &[], "ping")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json().unwrap()["body"], "ping");
    assert_eq!(s.client().get("/fn/echo").await.unwrap().status, 404);
    assert_eq!(
        s.client().get("/ns/team-b/fn/echo").await.unwrap().status,
        404
    );
    assert_eq!(s.client().get("/fn/hello").await.unwrap().status, 200);

    // Its activation record carries the namespace; only A (and the admin) see it.
    let id = r.header("wisp-activation-id").unwrap().to_string();
    let rec = get_json(&a, &format!("/v1/activations/{id}")).await;
    assert_eq!(
        (rec["namespace"].as_str(), rec["function"].as_str()),
        (Some("team-a"), Some("echo"))
    );
    assert_eq!(
        b.get(&format!("/v1/activations/{id}"))
            .await
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        admin
            .get(&format!("/v1/activations/{id}"))
            .await
            .unwrap()
            .status,
        200
    );
    let listed = get_json(&a, "/v1/activations").await;
    assert_eq!(listed["activations"].as_array().unwrap().len(), 1);
    let listed = get_json(&b, "/v1/activations").await;
    assert!(listed["activations"].as_array().unwrap().is_empty());

    // Metrics: the default namespace's series as before, others labelled.
    let m = admin.get("/metrics").await.unwrap().text();
    assert!(
        m.contains("wisp_invocations_total{function=\"hello\",status=\"success\"} 1"),
        "{m}"
    );
    assert!(
        m.contains(
            "wisp_invocations_total{function=\"echo\",namespace=\"team-a\",status=\"success\"} 1"
        ),
        "{m}"
    );

    // Wrong keys are 401; a rotated key stops working at once.
    let wrong = format!("{}:{}", key_a.split(':').next().unwrap(), "x".repeat(64));
    assert_eq!(
        s.client_with_token(&wrong)
            .get("/v1/functions")
            .await
            .unwrap()
            .status,
        401
    );
    let o = wisp(&s, &key_a, &["namespace", "rotate-key", "team-a"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let new_a = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert_ne!(new_a, key_a);
    assert_eq!(a.get("/v1/functions").await.unwrap().status, 401);
    assert_eq!(
        s.client_with_token(&new_a)
            .get("/v1/functions")
            .await
            .unwrap()
            .status,
        200
    );

    // The CLI's --namespace and ls.
    let o = wisp(&s, TOKEN, &["ls", "--namespace", "team-a"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("echo"));
    let o = wisp(&s, TOKEN, &["namespace", "ls"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("team-a") && out.contains("team-b") && out.contains("default"),
        "{out}"
    );
    assert!(
        !out.contains(new_a.split(':').nth(1).unwrap()),
        "keys are never listed"
    );

    // Keys survive a restart (only their hashes are stored).
    let mut s = s;
    s.restart();
    let a = s.client_with_token(&new_a);
    assert_eq!(names(get_json(&a, "/v1/functions").await), ["team-a/echo"]);
    let db = std::fs::read(s.home.join("wisp.db")).unwrap();
    let secret = new_a.split(':').nth(1).unwrap().as_bytes();
    assert!(
        !db.windows(secret.len()).any(|w| w == secret),
        "the key is not stored in clear"
    );

    // Removing a namespace takes its functions and records with it.
    let o = wisp(&s, TOKEN, &["namespace", "rm", "team-a"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(a.get("/v1/functions").await.unwrap().status, 401);
    assert_eq!(
        s.client().get("/ns/team-a/fn/echo").await.unwrap().status,
        404
    );
    let admin = s.client_with_token(TOKEN);
    assert_eq!(
        admin
            .get(&format!("/v1/activations/{id}"))
            .await
            .unwrap()
            .status,
        404
    );
    let r = admin
        .send(Method::DELETE, "/v1/namespaces/default", &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(r.status, 409, "the default namespace stays");
    let r = admin
        .send(Method::POST, "/v1/namespaces", &[], r#"{"name":"team-b"}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 409);
    let r = admin
        .send(
            Method::POST,
            "/v1/namespaces",
            &[],
            r#"{"name":"bad/name"}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
}

/// A private function is not on the public invoke routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_function_is_not_served_on_the_invoke_routes() {
    let s = Server::start();
    let c = s.client();
    let r = deploy(
        &c,
        "secret",
        &read_guest("hello"),
        serde_json::json!({"private": true}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(c.get("/fn/secret").await.unwrap().status, 404);
    let r = deploy(&c, "secret", &read_guest("hello"), serde_json::json!({})).await;
    assert_eq!(r.status, 201, "a new config is a new version");
    assert_eq!(c.get("/fn/secret").await.unwrap().status, 200);
}
