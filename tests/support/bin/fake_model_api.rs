//! Runs the fake Anthropic Messages API on its own, for local runs of the whole system without a
//! paid key: `fake-model-api [ADDR]` (default 127.0.0.1:8790), then point the agent-service at it
//! with `ANTHROPIC_BASE_URL=http://ADDR`.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8790".into());
    let addr = addr
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad address {addr}: {e}")))?;
    let listener = autopilot_tests::fake_model_api::bind(addr).await?;
    eprintln!("fake model API listening on http://{}", listener.local_addr()?);
    autopilot_tests::fake_model_api::serve(listener).await;
    Ok(())
}
