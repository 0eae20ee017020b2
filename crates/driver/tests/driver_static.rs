//! The static driver: endpoints come from the release; backout only
//! records them.

#![allow(clippy::unwrap_used)]

use backout_driver::{DeployRequest, Driver, ErrorKind, StaticDriver};
use backout_spec::StaticSpec;

fn release(endpoints: Option<&str>) -> DeployRequest {
    let mut req = DeployRequest::new("web", "v2", 2);
    if let Some(e) = endpoints {
        req.config.insert("endpoints".into(), e.into());
    }
    req
}

/// An `endpoints` setting (or none) and the endpoints it gives, or a
/// fragment of the error.
type Case<'a> = (Option<&'a str>, Result<&'a [&'a str], &'a str>);

/// One release per row: its `endpoints` setting and the endpoints, or a
/// fragment of the error.
#[tokio::test]
async fn endpoints_come_from_the_release() {
    let cases: &[Case<'_>] = &[
        (
            Some("http://10.0.0.5:8080,http://10.0.0.6:8080"),
            Ok(&["http://10.0.0.5:8080", "http://10.0.0.6:8080"]),
        ),
        (
            Some(" http://10.0.0.5:8080 , ,http://[::1]:9/ "),
            Ok(&["http://10.0.0.5:8080", "http://[::1]:9"]),
        ),
        (
            None,
            Err(
                "the release has no `endpoints` setting, so there is nothing to send traffic to; register the release with its endpoints, e.g. `backout release web --version v2 --set endpoints=http://10.0.0.5:8080,http://10.0.0.6:8080`",
            ),
        ),
        (
            Some("http://10.0.0.5:8080,10.0.0.6:8080"),
            Err("setting `endpoints`, entry 1: endpoint \"10.0.0.6:8080\" has no scheme"),
        ),
        (
            Some("http://a:1,http://a:1"),
            Err("setting `endpoints` lists http://a:1 twice"),
        ),
        (Some(" , "), Err("setting `endpoints` lists no endpoint")),
    ];
    for (setting, expected) in cases {
        let d = StaticDriver::new(StaticSpec {});
        let got = d.deploy(&release(*setting)).await;
        match (got, expected) {
            (Ok(instances), Ok(want)) => {
                let urls: Vec<String> = instances.iter().map(|i| i.endpoint.to_string()).collect();
                assert_eq!(urls, *want, "{setting:?}");
                assert_eq!(instances[0].id, "web-v2-0");
                assert!(instances.iter().all(|i| i.pid.is_none()));
            }
            (Err(e), Err(fragment)) => {
                assert_eq!(e.kind, ErrorKind::Release);
                let text = e.to_string();
                assert!(text.starts_with("static driver, web v2: "), "{text}");
                assert!(text.contains(fragment), "{setting:?}: {text}");
            }
            (got, want) => panic!("{setting:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[tokio::test]
async fn deploy_and_teardown_only_record() {
    let d = StaticDriver::new(StaticSpec {});
    let req = release(Some("http://10.0.0.5:8080"));
    let first = d.deploy(&req).await.unwrap();
    assert_eq!(d.deploy(&req).await.unwrap(), first, "idempotent");
    assert_eq!(d.scale(&req).await.unwrap(), first);
    assert_eq!(d.instances("web", "v2").await.unwrap(), first);

    let e = d.restart("web", "v2", "web-v2-0").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert!(e.to_string().contains("restart it where it runs"), "{e}");

    d.teardown("web", "v2").await.unwrap();
    assert!(d.instances("web", "v2").await.unwrap().is_empty());
    d.teardown("web", "v2").await.unwrap();

    // After a crash the release alone says what runs.
    let fresh = StaticDriver::new(StaticSpec {});
    let adopted = fresh.adopt(&req, &[]).await.unwrap();
    assert_eq!(adopted.len(), 1);
    assert_eq!(adopted[0].endpoint, first[0].endpoint);
}
