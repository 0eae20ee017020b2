//! The provider through the real OpenFeature Rust SDK, and its sync with a
//! real flag server on loopback.

use std::time::Duration;

use backout_flag_server::{self as ofrep, FileSource, FlagStore, Tokens, manage::Manager};
use backout_openfeature::BackoutProvider;
use backout_openfeature::sync::{self, Server};
use open_feature::{EvaluationContext, EvaluationErrorCode, EvaluationReason, OpenFeature};
use serde_json::{Value as Json, json};

fn flags() -> Json {
    json!({"metadata": {"flagSetId": "rust"}, "flags": {
        "checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
            "targeting": {"if": [{"==": [{"var": "country"}, "jp"]}, "on"]}},
        "limit": {"state": "ENABLED", "variants": {"low": 10, "high": 1000}, "defaultVariant": "low"},
        "ratio": {"state": "ENABLED", "variants": {"a": 0.5}, "defaultVariant": "a"},
        "greeting": {"state": "ENABLED", "variants": {"hi": "hello"}, "defaultVariant": "hi"},
        "layout": {"state": "ENABLED", "variants": {"grid": {"cols": 3, "dense": true}}, "defaultVariant": "grid"},
        "killed": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"}
    }})
}

#[tokio::test]
async fn evaluates_through_the_openfeature_client() {
    let loaded = backout_flags::load(&flags()).expect("flags load");
    let mut api = OpenFeature::singleton_mut().await;
    api.set_named_provider("backout-test", BackoutProvider::new(loaded.flags))
        .await;
    let client = api.create_named_client("backout-test");
    drop(api);

    let jp = EvaluationContext::default()
        .with_targeting_key("user-1")
        .with_custom_field("country", "jp");
    let us = EvaluationContext::default()
        .with_targeting_key("user-1")
        .with_custom_field("country", "us");
    let details = client
        .get_bool_details("checkout", Some(&jp), None)
        .await
        .expect("evaluates");
    assert!(details.value);
    assert_eq!(details.reason, Some(EvaluationReason::TargetingMatch));
    assert_eq!(details.variant.as_deref(), Some("on"));
    assert!(
        !client
            .get_bool_value("checkout", Some(&us), None)
            .await
            .expect("evaluates")
    );
    assert_eq!(
        client
            .get_int_value("limit", None, None)
            .await
            .expect("int"),
        10
    );
    assert_eq!(
        client
            .get_float_value("ratio", None, None)
            .await
            .expect("float"),
        0.5
    );
    assert_eq!(
        client
            .get_string_value("greeting", None, None)
            .await
            .expect("string"),
        "hello"
    );
    let layout = client
        .get_struct_value::<open_feature::StructValue>("layout", None, None)
        .await
        .expect("struct");
    assert_eq!(
        layout
            .fields
            .get("cols")
            .and_then(open_feature::Value::as_i64),
        Some(3)
    );
    // Wrong type, missing flag, disabled flag: errors, so the caller keeps
    // its own default.
    let wrong = client
        .get_int_value("greeting", None, None)
        .await
        .expect_err("type mismatch");
    assert_eq!(wrong.code, EvaluationErrorCode::TypeMismatch);
    let missing = client
        .get_bool_value("nope", None, None)
        .await
        .expect_err("missing");
    assert_eq!(missing.code, EvaluationErrorCode::FlagNotFound);
    let killed = client.get_bool_value("killed", None, None).await;
    assert!(
        !killed.clone().unwrap_or(false),
        "a disabled flag gives the caller's default"
    );
    assert!(
        killed
            .expect_err("defers")
            .message
            .is_some_and(|m| m.contains("disabled"))
    );
}

/// Starts the standalone flag server on loopback, in its own runtime on its
/// own thread, so that stopping it (sending on the returned channel) drops
/// every connection, as a crashed server would.
fn start_server(file: &std::path::Path) -> (String, Manager, std::sync::mpsc::Sender<()>) {
    let store = FlagStore::new();
    let source = FileSource::new(file);
    source.reload_into(&store).expect("flags load");
    let manager = Manager::new(source, store.clone());
    let app = ofrep::standalone_router(
        store,
        Tokens::new("flags", vec!["t".into()]),
        manager.clone(),
    );
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            addr_tx
                .send(listener.local_addr().expect("addr"))
                .expect("send addr");
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
        });
        // Dropping the runtime here closes every connection.
    });
    let addr = addr_rx.recv().expect("server address");
    (format!("http://{addr}"), manager, stop_tx)
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn syncs_from_the_server_and_survives_its_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("flags.json");
    std::fs::write(&file, flags().to_string()).expect("write");
    let (url, manager, stop) = start_server(&file);

    assert!(
        sync::connect(Server::new(&url)).await.is_err(),
        "the token is required"
    );
    let (provider, _task) = sync::connect(Server::new(&url).token("t"))
        .await
        .expect("first sync");
    let handle = provider.handle();
    let ctx = backout_flags::Context::with_key("u").attr("country", "jp");
    let value =
        |h: &backout_openfeature::FlagSetHandle| h.current().evaluate("checkout", &ctx, 0).reason;
    assert_eq!(value(&handle), backout_flags::Reason::TargetingMatch);

    // A kill on the server reaches the provider through the change stream.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let edit = backout_flags::edit::Edit::Kill {
        key: "checkout".into(),
    };
    tokio::task::block_in_place(|| manager.apply(&edit, "test", Some("incident".into())))
        .expect("kill");
    eventually("the kill reaches the provider", || {
        value(&handle) == backout_flags::Reason::Disabled
    })
    .await;
    assert!(!handle.is_stale());

    // The server goes away: the last set keeps serving, marked stale.
    stop.send(()).expect("stop the server");
    eventually("the provider notices", || handle.is_stale()).await;
    assert_eq!(value(&handle), backout_flags::Reason::Disabled);
    assert_eq!(
        open_feature::provider::FeatureProvider::status(&provider),
        open_feature::provider::ProviderStatus::STALE
    );
}
