//! Which node to talk to when the command line does not say: the record of a local
//! deployment (`cargo xtask deploy` writes `target/deploy/cluster.json`) names every
//! member and its API address. `--node NAME` picks a member from it; without `--api`,
//! `DHT_API` or `--node`, its first node is used when such a record exists, else the
//! default API address.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::args::{ApiAddress, DEFAULT_API, parse_api_address};

/// The variable that moves a deployment's folder (as for `cargo xtask deploy`).
pub const DEPLOY_DIR_ENV: &str = "DHT_DEPLOY_DIR";

/// The part of cluster.json this needs.
#[derive(Debug, Deserialize)]
struct Record {
    nodes: Vec<Member>,
}

#[derive(Debug, Deserialize)]
struct Member {
    name: String,
    #[serde(default)]
    api_address: Option<String>,
}

/// Where the API address came from, for the line on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The address.
    pub api: ApiAddress,
    /// `Some("node-1 of target/deploy/cluster.json")` when a deployment's record chose it.
    pub from: Option<String>,
}

/// The variables that move a deployment's record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Places {
    /// `$DHT_DEPLOY_DIR`: the deployment's folder.
    pub deploy_dir: Option<PathBuf>,
    /// `$CARGO_TARGET_DIR`: cargo's target folder, which holds `deploy/`.
    pub target_dir: Option<PathBuf>,
}

impl Places {
    /// The variables of this process (empty ones count as unset).
    pub fn from_env() -> Places {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Places {
            deploy_dir: var(DEPLOY_DIR_ENV),
            target_dir: var("CARGO_TARGET_DIR"),
        }
    }
}

/// The record of the deployment this command runs beside: `<deploy_dir>/cluster.json`
/// when that variable is set, else `<target_dir>/deploy/cluster.json` when it exists,
/// else the first `target/deploy/cluster.json` found in `cwd` or a folder above it.
pub fn find_record(cwd: &Path, places: &Places) -> Option<PathBuf> {
    if let Some(dir) = &places.deploy_dir {
        return Some(cwd.join(dir).join("cluster.json"));
    }
    if let Some(target) = &places.target_dir {
        let record = cwd.join(target).join("deploy").join("cluster.json");
        if record.is_file() {
            return Some(record);
        }
    }
    cwd.ancestors()
        .map(|dir| dir.join("target").join("deploy").join("cluster.json"))
        .find(|record| record.is_file())
}

/// How `path` is shown: relative to `cwd` when inside it.
fn show(path: &Path, cwd: &Path) -> String {
    path.strip_prefix(cwd).unwrap_or(path).display().to_string()
}

/// The API address of member `name` (the first node with an API when `None`) of the
/// record at `path`.
pub fn member_api(path: &Path, name: Option<&str>, cwd: &Path) -> Result<Chosen, String> {
    let shown = show(path, cwd);
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {shown}: {e}"))?;
    let record: Record = serde_json::from_str(&text)
        .map_err(|e| format!("{shown} is not a deployment record: {e}"))?;
    let member = match name {
        Some(name) => record
            .nodes
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = record.nodes.iter().map(|m| m.name.as_str()).collect();
                format!("no member {name:?} in {shown}; it has {}", names.join(", "))
            })?,
        None => record
            .nodes
            .iter()
            .find(|m| m.api_address.is_some())
            .ok_or_else(|| format!("no member of {shown} has an API address"))?,
    };
    let address = member.api_address.as_deref().ok_or_else(|| {
        format!(
            "{} in {shown} serves no API (a bootstrap node); pick a node",
            member.name
        )
    })?;
    let api = parse_api_address(address)
        .map_err(|e| format!("{} in {shown}: api_address {e}", member.name))?;
    Ok(Chosen {
        api,
        from: Some(format!("{} of {shown}", member.name)),
    })
}

/// The API address to use: member `node` of the deployment's record when `--node` is
/// given (an error without a record); else `api` (from `--api` or `DHT_API`); else the
/// record's first node when there is a record; else [`DEFAULT_API`].
pub fn choose(
    api: Option<ApiAddress>,
    node: Option<&str>,
    cwd: &Path,
    places: &Places,
) -> Result<Chosen, String> {
    if let Some(node) = node {
        let record = find_record(cwd, places).ok_or_else(|| {
            format!(
                "--node {node}: no deployment record found (target/deploy/cluster.json in {} \
                 or a folder above; start one with cargo xtask deploy)",
                cwd.display()
            )
        })?;
        return member_api(&record, Some(node), cwd);
    }
    if let Some(api) = api {
        return Ok(Chosen { api, from: None });
    }
    match find_record(cwd, places) {
        Some(record) => member_api(&record, None, cwd),
        None => Ok(Chosen {
            api: parse_api_address(DEFAULT_API)?,
            from: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dht-cli-deploy-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("target").join("deploy")).unwrap();
        dir
    }

    const RECORD: &str = r#"{"mode":"local","nodes":[
        {"name":"bootstrap","role":"bootstrap","node_id":null,"api_address":null,
         "p2p_address":"127.0.0.1:4000","pid":1,"log":"/l","config":"/c"},
        {"name":"node-1","role":"node","node_id":null,"api_address":"127.0.0.1:7401",
         "p2p_address":"127.0.0.1:4001","pid":2,"log":"/l","config":"/c"},
        {"name":"node-2","role":"node","node_id":null,"api_address":"127.0.0.1:7402",
         "p2p_address":"127.0.0.1:4002","pid":3,"log":"/l","config":"/c"}]}"#;

    #[test]
    fn members_are_picked_from_the_record() {
        let dir = folder("pick");
        let record = dir.join("target/deploy/cluster.json");
        std::fs::write(&record, RECORD).unwrap();
        let first = member_api(&record, None, &dir).unwrap();
        assert_eq!(first.api.as_str(), "127.0.0.1:7401");
        assert_eq!(
            first.from.as_deref(),
            Some("node-1 of target/deploy/cluster.json")
        );
        let second = member_api(&record, Some("node-2"), &dir).unwrap();
        assert_eq!(second.api.as_str(), "127.0.0.1:7402");
        let boot = member_api(&record, Some("bootstrap"), &dir).unwrap_err();
        assert!(boot.contains("serves no API"), "{boot}");
        let missing = member_api(&record, Some("node-9"), &dir).unwrap_err();
        assert!(missing.contains("bootstrap, node-1, node-2"), "{missing}");
        std::fs::write(&record, "{not json").unwrap();
        let bad = member_api(&record, None, &dir).unwrap_err();
        assert!(bad.contains("is not a deployment record"), "{bad}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_record_is_found_from_a_subfolder_and_an_explicit_address_wins() {
        let dir = folder("find");
        std::fs::write(dir.join("target/deploy/cluster.json"), RECORD).unwrap();
        let deep = dir.join("crates").join("dht-id");
        std::fs::create_dir_all(&deep).unwrap();
        let none = Places::default();
        assert_eq!(
            find_record(&deep, &none),
            Some(dir.join("target/deploy/cluster.json"))
        );
        let chosen = choose(None, Some("node-2"), &deep, &none).unwrap();
        assert_eq!(chosen.api.as_str(), "127.0.0.1:7402");
        let explicit = parse_api_address("10.0.0.1:7401").unwrap();
        let chosen = choose(Some(explicit.clone()), None, &deep, &none).unwrap();
        assert_eq!(
            chosen,
            Chosen {
                api: explicit.clone(),
                from: None
            }
        );
        // --node names a member: it wins over an address from DHT_API.
        let chosen = choose(Some(explicit), Some("node-1"), &deep, &none).unwrap();
        assert_eq!(chosen.api.as_str(), "127.0.0.1:7401");
        // Without a record, --node is an error; no flag at all means the default.
        let elsewhere = folder("none");
        std::fs::remove_dir_all(elsewhere.join("target")).unwrap();
        let error = choose(None, Some("node-1"), &elsewhere, &none).unwrap_err();
        assert!(error.contains("no deployment record found"), "{error}");
        let default = choose(None, None, &elsewhere, &none).unwrap();
        assert_eq!(default.api.as_str(), DEFAULT_API);
        // $DHT_DEPLOY_DIR names the folder outright; $CARGO_TARGET_DIR is looked in.
        let moved = Places {
            deploy_dir: Some("target/deploy".into()),
            target_dir: None,
        };
        assert_eq!(
            find_record(&dir, &moved),
            Some(dir.join("target/deploy/cluster.json"))
        );
        let target = Places {
            deploy_dir: None,
            target_dir: Some(dir.join("target")),
        };
        assert_eq!(
            find_record(&elsewhere, &target),
            Some(dir.join("target/deploy/cluster.json"))
        );
        std::fs::remove_dir_all(&elsewhere).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
