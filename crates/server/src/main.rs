//! The `seedbucket` binary: `serve`, `key`, `config`.

mod admin;
mod app;
mod cli;
mod config;
mod console;
mod server_cli;
mod telemetry;
mod torrent_cli;

use anyhow::Context as _;
use clap::Parser;
use seedbucket_store::credentials::{AccessKey, KeyFile, create_in, delete_in, find};
use seedbucket_store::{GatewayOptions, Store};

use crate::cli::{BucketAction, Cli, Command, ConfigAction, KeyAction, SseKeyAction};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = config::Config::resolve(&args)?;
            init_tracing(if config.log_json { "json" } else { "text" });
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
                None => keys_in_data_dir(action, &data_dir.unwrap_or(file.data_dir)),
                Some(gateway) => block_on(async {
                    for record in keys_in_backend(action, gateway).await? {
                        tell_nodes(redis.as_deref(), &record).await;
                    }
                    Ok(())
                }),
            }
        }
        Command::Bucket {
            action: BucketAction::Assign { bucket, owner },
            backend,
            ..
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
        Command::Bucket {
            action,
            backend,
            server,
        } => {
            let file = config::load_file(backend.config.as_deref())?;
            block_on(server_cli::bucket(action, &server, &file))
        }
        Command::Stats {
            server,
            config,
            json,
        } => {
            let file = config::load_file(config.as_deref())?;
            block_on(server_cli::stats(&server, &file, json))
        }
        Command::SseKey {
            action: SseKeyAction::Rotate,
            data_dir,
            config,
        } => {
            let file = config::load_file(config.as_deref())?;
            let data_dir = data_dir.unwrap_or(file.data_dir);
            ensure_data_dir(&data_dir)?;
            let id = seedbucket_store::server_keys::rotate(&data_dir)?;
            println!(
                "SSE-S3 master key {id} made current in {}; restart the server to write with it",
                data_dir.display()
            );
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
    if k.is_admin() {
        println!("role:        admin (may list and manage every bucket)");
    }
}

fn print_key_list(keys: &[AccessKey]) {
    println!("{:<12} {:<22} {:<64} ROLE", "NAME", "ACCESS KEY", "USER ID");
    for k in keys {
        let role = if k.is_admin() { "admin" } else { "user" };
        println!(
            "{:<12} {:<22} {:<64} {role}",
            k.name, k.access_key, k.user_id
        );
    }
}

/// An imported pair, if both halves were given (clap requires them together).
fn imported(access_key: Option<String>, secret_key: Option<String>) -> Option<(String, String)> {
    access_key.zip(secret_key)
}

/// Refuses a directory that holds no server's data: a mistyped path or a missing
/// `--config` must not make an empty data dir whose keys no server uses.
fn ensure_data_dir(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let holds = |name: &str| data_dir.join(name).exists();
    if !holds("keys.json") && !holds("meta.redb") {
        anyhow::bail!(
            "no seedbucket data in {}: give the server's data dir (--data-dir, \
             SEEDBUCKET_DATA_DIR or data_dir in --config), or start `seedbucket serve` with it once",
            data_dir.display()
        );
    }
    Ok(())
}

/// The buckets `key` owns, from (bucket, owner user id) pairs.
fn owned_by(key: &AccessKey, buckets: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    buckets
        .into_iter()
        .filter(|(_, owner)| *owner == key.user_id)
        .map(|(name, _)| name)
        .collect()
}

/// Gateway mode: makes `user_id` the owner of `bucket` in the metadata bucket.
async fn set_bucket_owner(store: &Store, bucket: &str, user_id: &str) -> anyhow::Result<()> {
    let owner = user_id.to_owned();
    store
        .update_bucket(bucket, move |rec| {
            rec.owner = owner;
            Ok(())
        })
        .await
        .map(|_| ())
        .with_context(|| format!("assigning bucket {bucket}"))
}

/// The message for a key that still owns buckets.
fn still_owns(key: &AccessKey, owned: &[String]) -> anyhow::Error {
    anyhow::anyhow!(
        "key {} still owns {} bucket(s): {}; hand them to another key with --transfer-to KEY, \
         or delete them first",
        key.name,
        owned.len(),
        owned.join(", ")
    )
}

/// The key `transfer_to` names among `keys` (the deleted key is no longer among them).
fn transfer_target<'a>(
    keys: &'a [AccessKey],
    transfer_to: Option<&str>,
) -> anyhow::Result<Option<&'a AccessKey>> {
    transfer_to
        .map(|t| {
            find(keys, t).with_context(|| {
                format!("--transfer-to: no other key with access key id or name {t:?}")
            })
        })
        .transpose()
}

fn keys_in_data_dir(action: KeyAction, data_dir: &std::path::Path) -> anyhow::Result<()> {
    ensure_data_dir(data_dir)?;
    let file = KeyFile::new(data_dir);
    match action {
        KeyAction::Create {
            name,
            access_key,
            secret_key,
            admin,
        } => print_key(&file.create(&name, imported(access_key, secret_key), admin)?),
        KeyAction::List => print_key_list(&file.load()?),
        KeyAction::Delete {
            id_or_name,
            transfer_to,
        } => {
            let mut keys = file.load()?;
            let key = delete_in(&mut keys, &id_or_name)?;
            let target = transfer_target(&keys, transfer_to.as_deref())?;
            hand_over_in_data_dir(data_dir, &key, target)?;
            file.replace(&keys)?;
            println!("deleted {id_or_name}");
        }
    }
    Ok(())
}

/// Embedded mode: refuses if `key` owns buckets and no `target` is given; hands them to
/// `target` otherwise. The database answers while the server is stopped; while it runs (and
/// holds the database) the server's owner index does, and buckets cannot be handed over.
fn hand_over_in_data_dir(
    data_dir: &std::path::Path,
    key: &AccessKey,
    target: Option<&AccessKey>,
) -> anyhow::Result<()> {
    use seedbucket_store::bucket_owners;
    let db_path = data_dir.join("meta.redb");
    if !db_path.exists() {
        return Ok(());
    }
    match seedbucket_store::meta::Meta::open(&db_path) {
        Ok(meta) => {
            let owned = owned_by(
                key,
                meta.list_buckets()?.into_iter().map(|b| (b.name, b.owner)),
            );
            if owned.is_empty() {
                return Ok(());
            }
            let target = target.ok_or_else(|| still_owns(key, &owned))?;
            for name in &owned {
                let owner = target.user_id.clone();
                meta.update_bucket(name, move |b| {
                    b.owner = owner;
                    Ok(())
                })?;
            }
            bucket_owners::write(data_dir, &meta.list_buckets()?)?;
            println!("buckets now owned by {}: {}", target.name, owned.join(", "));
            Ok(())
        }
        Err(_) => {
            let index = bucket_owners::read(data_dir)?.context(
                "the server holds the database and has written no bucket owner index yet; \
                 stop it to delete this key",
            )?;
            let owned = owned_by(key, index);
            match (owned.is_empty(), target) {
                (true, _) => Ok(()),
                (false, None) => Err(still_owns(key, &owned)),
                (false, Some(_)) => anyhow::bail!(
                    "the server is running and holds the database: stop it to hand buckets \
                     over with --transfer-to, or delete them first"
                ),
            }
        }
    }
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
/// Returns the metadata records it changed (for the nodes' change notices).
async fn keys_in_backend(
    action: KeyAction,
    gateway: GatewayOptions,
) -> anyhow::Result<Vec<String>> {
    let store = Store::open_gateway(gateway).await?;
    let mut keys = store.shared_keys().await?.unwrap_or_default();
    let mut changed = vec!["keys.json".to_owned()];
    match action {
        KeyAction::Create {
            name,
            access_key,
            secret_key,
            admin,
        } => {
            let k = create_in(&mut keys, &name, imported(access_key, secret_key), admin)?;
            store.save_shared_keys(&keys).await?;
            print_key(&k);
        }
        KeyAction::List => {
            print_key_list(&keys);
            return Ok(Vec::new());
        }
        KeyAction::Delete {
            id_or_name,
            transfer_to,
        } => {
            let key = delete_in(&mut keys, &id_or_name)?;
            let target = transfer_target(&keys, transfer_to.as_deref())?;
            let owned = owned_by(
                &key,
                store
                    .list_buckets()
                    .await?
                    .into_iter()
                    .map(|b| (b.name, b.owner)),
            );
            if !owned.is_empty() {
                let target = target.ok_or_else(|| still_owns(&key, &owned))?;
                for name in &owned {
                    set_bucket_owner(&store, name, &target.user_id).await?;
                }
                println!("buckets now owned by {}: {}", target.name, owned.join(", "));
                changed.extend(owned.iter().map(|b| format!("buckets/{b}.json")));
            }
            store.save_shared_keys(&keys).await?;
            println!("deleted {id_or_name}");
        }
    }
    Ok(changed)
}

async fn assign_bucket(gateway: GatewayOptions, bucket: &str, owner: &str) -> anyhow::Result<()> {
    let store = Store::open_gateway(gateway).await?;
    let keys = store.shared_keys().await?.unwrap_or_default();
    let key = find(&keys, owner)
        .with_context(|| format!("no key with name or access key id {owner:?}"))?;
    set_bucket_owner(&store, bucket, &key.user_id).await?;
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
