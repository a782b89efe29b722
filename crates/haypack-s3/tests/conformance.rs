//! The store conformance suite, on real S3 servers: Garage and moto (with moto's default
//! 5 MiB minimum part size).

use haypack_s3::MIN_PART_SIZE;
use haypack_s3::testing::TestServer;

async fn conformance(server: &'static str) {
    let server = TestServer::get(server);
    let store = server.store("conformance", MIN_PART_SIZE).await;
    haypack_store::conformance::run_all(&store).await;
}

#[ignore = "needs the S3 test servers: run with --include-ignored under scripts/test.sh"]
#[tokio::test(flavor = "multi_thread")]
async fn garage_passes_the_conformance_suite() {
    conformance("garage").await;
}

#[ignore = "needs the S3 test servers: run with --include-ignored under scripts/test.sh"]
#[tokio::test(flavor = "multi_thread")]
async fn moto_passes_the_conformance_suite() {
    conformance("moto").await;
}
