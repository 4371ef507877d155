use oec_api::startup::Application;
use oec_common::config::{Process, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load_or_exit(Process::Api);
    let mut signals = oec_common::shutdown::Signals::install()?;
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "oec-api listening");
    app.run_until(async {
        let signal = signals.recv().await;
        tracing::info!(signal, "oec-api stopping");
    })
    .await?;
    tracing::info!("oec-api stopped");
    Ok(())
}
