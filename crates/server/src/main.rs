//! The `seedbucket` binary: `serve`, `key`, `config`.

mod admin;
mod app;
mod cli;
mod config;
mod torrent_cli;

use anyhow::Context as _;
use clap::Parser;
use seedbucket_store::credentials::{AccessKey, KeyFile, create_in, delete_in};
use seedbucket_store::{GatewayOptions, Store};

use crate::cli::{BucketAction, Cli, Command, ConfigAction, KeyAction};

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
        Command::Key {
            action,
            data_dir,
            backend,
        } => {
            let file = config::load_file(backend.config.as_deref())?;
            let redis = config::redis_url(&backend, &file);
            match config::resolve_backend(&backend, &file, Some(0), false)? {
                None => keys_in_data_dir(action, &data_dir),
                Some(gateway) => block_on(async {
                    let changed = keys_in_backend(action, gateway).await?;
                    if changed {
                        tell_nodes(redis.as_deref(), "keys.json").await;
                    }
                    Ok(())
                }),
            }
        }
        Command::Bucket {
            action: BucketAction::Assign { bucket, owner },
            backend,
        } => {
            let file = config::load_file(backend.config.as_deref())?;
            let gateway = config::resolve_backend(&backend, &file, Some(0), false)?.context(
                "`bucket assign` is for gateway mode: give --backend s3 and its settings",
            )?;
            let redis = config::redis_url(&backend, &file);
            block_on(async {
                assign_bucket(gateway, &bucket, &owner).await?;
                tell_nodes(redis.as_deref(), &format!("buckets/{bucket}.json")).await;
                Ok(())
            })
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

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn print_key(k: &AccessKey) {
    println!("name:        {}", k.name);
    println!("access key:  {}", k.access_key);
    println!("secret key:  {}", k.secret_key);
    println!("user id:     {}", k.user_id);
}

fn print_key_list(keys: &[AccessKey]) {
    println!("{:<12} {:<22} USER ID", "NAME", "ACCESS KEY");
    for k in keys {
        println!("{:<12} {:<22} {}", k.name, k.access_key, k.user_id);
    }
}

fn keys_in_data_dir(action: KeyAction, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let file = KeyFile::new(data_dir);
    match action {
        KeyAction::Create { name } => print_key(&file.create(&name)?),
        KeyAction::List => print_key_list(&file.load()?),
        KeyAction::Delete { id_or_name } => {
            if !file.delete(&id_or_name)? {
                anyhow::bail!("no key with access key id or name {id_or_name:?}");
            }
            println!("deleted {id_or_name}");
        }
    }
    Ok(())
}

/// Gateway mode: the keys live in the backend's metadata bucket; running nodes pick changes up
/// within seconds.
/// With `--redis`, tells the running nodes that a record changed, so they drop their cached
/// copy now rather than within their cache time.
async fn tell_nodes(redis: Option<&str>, key: &str) {
    if let Some(url) = redis
        && let Err(e) = seedbucket_cluster::notices::publish_once(url, key).await
    {
        eprintln!(
            "note: could not notify the nodes through redis ({e}); they see the change within 5 s"
        );
    }
}

/// Runs a key command against the metadata bucket; true if it changed the keys.
async fn keys_in_backend(action: KeyAction, gateway: GatewayOptions) -> anyhow::Result<bool> {
    let store = Store::open_gateway(gateway).await?;
    let mut keys = store.shared_keys().await?.unwrap_or_default();
    match action {
        KeyAction::Create { name } => {
            let k = create_in(&mut keys, &name)?;
            store.save_shared_keys(&keys).await?;
            print_key(&k);
        }
        KeyAction::List => {
            print_key_list(&keys);
            return Ok(false);
        }
        KeyAction::Delete { id_or_name } => {
            if !delete_in(&mut keys, &id_or_name) {
                anyhow::bail!("no key with access key id or name {id_or_name:?}");
            }
            store.save_shared_keys(&keys).await?;
            println!("deleted {id_or_name}");
        }
    }
    Ok(true)
}

async fn assign_bucket(gateway: GatewayOptions, bucket: &str, owner: &str) -> anyhow::Result<()> {
    let store = Store::open_gateway(gateway).await?;
    let keys = store.shared_keys().await?.unwrap_or_default();
    let key = keys
        .iter()
        .find(|k| k.name == owner || k.access_key == owner)
        .with_context(|| format!("no key with name or access key id {owner:?}"))?;
    let user_id = key.user_id.clone();
    store
        .update_bucket(bucket, move |rec| {
            rec.owner = user_id;
            Ok(())
        })
        .await
        .with_context(|| format!("assigning bucket {bucket}"))?;
    println!(
        "bucket {bucket} now belongs to {} ({})",
        key.name, key.user_id
    );
    Ok(())
}

fn init_tracing(format: &str) {
    use tracing_subscriber::EnvFilter;
    // librqbit_utp warns at every start that the kernel caps its UDP receive buffer below
    // what it asks for (harmless: the seeder only receives requests); quiet unless asked.
    let directives = match std::env::var("RUST_LOG") {
        Ok(v) if v.contains("librqbit_utp") => v,
        Ok(v) => format!("{v},librqbit_utp=error"),
        Err(_) => "info,s3s=off,librqbit_utp=error".to_owned(),
    };
    let filter = EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| EnvFilter::new("info,s3s=off,librqbit_utp=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
