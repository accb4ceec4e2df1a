//! The shop's caching headers over real HTTP: the catalogue's public policy with ETags and
//! 304s, per-user data kept private, errors never stored.

use vitals_integration_tests::TestShop;

#[tokio::test]
async fn the_shop_caches_by_policy_and_answers_conditional_requests() {
    let shop = TestShop::start_sqlite().await;
    let client = shop.client();

    let first = shop.get("/products/1").await;
    assert_eq!(first.status(), 200);
    let policy = "public, max-age=60, stale-while-revalidate=300";
    assert_eq!(first.headers()["cache-control"], policy);
    let etag = first.headers()["etag"].to_str().expect("ascii").to_owned();
    let body = first.bytes().await.expect("a body");
    assert!(!body.is_empty());

    let again = client
        .get(shop.url("/products/1"))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("a response");
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert_eq!(again.headers()["cache-control"], policy);
    assert!(again.bytes().await.expect("no body").is_empty());

    let list = shop.get("/products").await;
    assert_eq!(list.headers()["cache-control"], policy);
    assert!(list.headers().contains_key("etag"));

    // The same catalogue asked with credentials: the private equivalent, varying on them.
    let authorized = client
        .get(shop.url("/products"))
        .header("authorization", "Bearer demo")
        .send()
        .await
        .expect("a response");
    assert_eq!(
        authorized.headers()["cache-control"],
        "private, max-age=60, stale-while-revalidate=300"
    );
    assert_eq!(authorized.headers()["vary"], "Authorization");

    let me = client
        .get(shop.url("/me"))
        .header("authorization", "Bearer demo")
        .send()
        .await
        .expect("a response");
    assert_eq!(me.status(), 200);
    assert_eq!(
        me.headers()["cache-control"],
        "private, max-age=0, must-revalidate"
    );
    let anonymous = shop.get("/me").await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["cache-control"], "no-store");

    let unknown = shop.get("/products/99999999").await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.headers()["cache-control"], "public, max-age=10");

    let orders = shop.get("/orders").await;
    assert_eq!(orders.headers()["cache-control"], "no-cache");
    assert!(orders.headers().contains_key("etag"));
    let checkout = shop.get("/checkout?product_id=1").await;
    assert_eq!(checkout.headers()["cache-control"], "no-store");
    shop.shutdown().await;
}
