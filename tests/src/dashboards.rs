//! The Grafana dashboards and Prometheus rule files under `dashboards/`, read the way Grafana and
//! Prometheus would: every panel query with its template variables substituted, every rule file
//! to load. The end-to-end telemetry test runs them against a real Prometheus.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// `dashboards/` of the checkout.
pub fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// The rule files (`dashboards/rules/*.yaml`, not their unit tests), sorted.
pub fn rule_files() -> Result<Vec<PathBuf>> {
    let dir = dashboards_dir().join("rules");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

/// One panel of a dashboard and its queries.
#[derive(Debug, Clone)]
pub struct Panel {
    /// The dashboard's file name, e.g. `apiserver.json`.
    pub dashboard: String,
    pub title: String,
    /// The panel's PromQL expressions, variables substituted.
    pub queries: Vec<String>,
}

/// Every panel (rows left out) of every `dashboards/*.json`, its queries with each `(variable,
/// value)` of `variables` substituted. Fails on a query that still names a variable afterwards,
/// on a panel without queries, and on a dashboard whose datasource is not the `${datasource}`
/// variable of type prometheus.
pub fn panels(variables: &[(&str, String)]) -> Result<Vec<Panel>> {
    let dir = dashboards_dir();
    let mut names: Vec<String> = fs::read_dir(&dir)?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    let mut panels = Vec::new();
    for name in names {
        let text = fs::read_to_string(dir.join(&name))?;
        let dashboard: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{name} is not JSON"))?;
        let datasource = dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == "datasource");
        match datasource {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            _ => bail!("{name}: no `datasource` variable of type prometheus"),
        }
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            if panel["type"] == "row" {
                continue;
            }
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            if panel["datasource"]["uid"] != "${datasource}" {
                bail!("{name}: {title}: datasource is not ${{datasource}}");
            }
            let mut queries = Vec::new();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let mut expr = target["expr"]
                    .as_str()
                    .with_context(|| format!("{name}: {title}: a target without expr"))?
                    .to_owned();
                for (variable, value) in variables {
                    expr = expr.replace(variable, value);
                }
                if expr.contains('$') {
                    bail!("{name}: {title}: a variable left in {expr}");
                }
                queries.push(expr);
            }
            if queries.is_empty() {
                bail!("{name}: {title}: no queries");
            }
            panels.push(Panel {
                dashboard: name.clone(),
                title,
                queries,
            });
        }
    }
    Ok(panels)
}
