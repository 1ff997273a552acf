//! The `seedbucket` binary: `serve`, `key`, `config`.

mod admin;
mod app;
mod cli;
mod config;
mod torrent_cli;

use clap::Parser;
use seedbucket_store::credentials::KeyFile;

use crate::cli::{Cli, Command, ConfigAction, KeyAction};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_tracing(&args.log_format);
            let config = config::Config::resolve(&args)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(app::serve(config))
        }
        Command::Key { action, data_dir } => {
            let file = KeyFile::new(&data_dir);
            match action {
                KeyAction::Create { name } => {
                    let k = file.create(&name)?;
                    println!("name:        {}", k.name);
                    println!("access key:  {}", k.access_key);
                    println!("secret key:  {}", k.secret_key);
                    println!("user id:     {}", k.user_id);
                }
                KeyAction::List => {
                    println!("{:<12} {:<22} USER ID", "NAME", "ACCESS KEY");
                    for k in file.load()? {
                        println!("{:<12} {:<22} {}", k.name, k.access_key, k.user_id);
                    }
                }
                KeyAction::Delete { id_or_name } => {
                    if !file.delete(&id_or_name)? {
                        anyhow::bail!("no key with access key id or name {id_or_name:?}");
                    }
                    println!("deleted {id_or_name}");
                }
            }
            Ok(())
        }
        Command::Torrent { action } => torrent_cli::run(action),
        Command::Config {
            action: ConfigAction::Default,
        } => {
            print!("{}", config::default_toml()?);
            Ok(())
        }
    }
}

fn init_tracing(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,s3s=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
