//! `POST /orders` on the shop over real TCP, on SQLite and PostgreSQL: 100 concurrent requests
//! with one `Idempotency-Key` make one order (counted in the database); the rest get 409 or the
//! first one's answer replayed; the key with another body gets 422; no key, 400.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use vitals_integration_tests::{TestShop, postgres_admin_url};

async fn one_order_for_one_key(shop: &TestShop) {
    let before = shop.shop().db().orders_placed().await.unwrap();
    let body = serde_json::json!({ "customer_id": 3, "product_id": 5, "quantity": 2 });
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let request = shop
                .client()
                .post(shop.url("/orders"))
                .header("idempotency-key", "\"order-7f3a\"")
                .json(&body);
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let replayed = response.headers().contains_key("idempotent-replayed");
                let text = response.text().await.unwrap();
                (status, replayed, text)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    let after = shop.shop().db().orders_placed().await.unwrap();
    assert_eq!(after - before, 1, "one insert for one key");
    let first: Vec<_> = answers.iter().filter(|(s, r, _)| *s == 201 && !r).collect();
    assert_eq!(first.len(), 1, "{answers:?}");
    for (status, replayed, text) in &answers {
        match status {
            201 if *replayed => assert_eq!(text, &first[0].2, "the same answer, replayed"),
            201 | 409 => {}
            other => panic!("unexpected {other}: {text}"),
        }
    }
    // Afterwards, a retry is a replay: never a second order.
    let retry = shop
        .client()
        .post(shop.url("/orders"))
        .header("idempotency-key", "\"order-7f3a\"")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let other = serde_json::json!({ "customer_id": 3, "product_id": 5, "quantity": 3 });
    let reused = shop
        .client()
        .post(shop.url("/orders"))
        .header("idempotency-key", "\"order-7f3a\"")
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status(), 422);
    assert_eq!(reused.headers()["content-type"], "application/problem+json");
    let keyless = shop
        .client()
        .post(shop.url("/orders"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(keyless.status(), 400);
    assert_eq!(shop.shop().db().orders_placed().await.unwrap() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_makes_one_order_on_sqlite() {
    let shop = TestShop::start_sqlite().await;
    one_order_for_one_key(&shop).await;
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_makes_one_order_on_postgres() {
    let Some(admin) = postgres_admin_url("one_key_makes_one_order_on_postgres") else {
        return;
    };
    let shop = TestShop::start_postgres(&admin).await;
    one_order_for_one_key(&shop).await;
    shop.shutdown().await;
}
