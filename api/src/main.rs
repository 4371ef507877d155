use oec_api::startup::Application;
use oec_common::config::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("oec-api: {e}");
            std::process::exit(2);
        }
    };
    oec_common::telemetry::init(settings.log_format);
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
