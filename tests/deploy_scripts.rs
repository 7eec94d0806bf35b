//! The scale-out files parse and agree with the CLI: the SLURM scripts pass `bash -n`, the
//! Kubernetes manifest is valid YAML with an Indexed Job whose shard count matches its
//! completions, and every `echo4o eval` flag they use exists.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::path::Path;
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn eval_help(sub: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_echo4o"))
        .args(sub)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Every `--flag` in `text` right after an `echo4o eval` invocation exists in its help.
fn flags_exist(text: &str, origin: &str) {
    let help = eval_help(&["eval"]) + &eval_help(&["eval", "merge"]);
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for word in code.split(|c: char| c.is_whitespace() || c == '"') {
        if let Some(flag) = word.strip_prefix("--")
            && !flag.is_empty()
            && flag.starts_with(|c: char| c.is_ascii_lowercase())
            && flag.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            && ![
                "parsable",
                "array",
                "export",
                "dependency",
                "for",
                "timeout",
            ]
            .contains(&flag)
        {
            assert!(
                help.contains(&format!("--{flag}")),
                "{origin}: --{flag} is not an eval flag"
            );
        }
    }
}

#[test]
fn slurm_scripts_are_valid_bash_and_use_real_flags() {
    let dir = Path::new(ROOT).join("scripts/slurm");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let status = Command::new("bash").arg("-n").arg(&path).status().unwrap();
        assert!(status.success(), "bash -n {}", path.display());
        flags_exist(
            &std::fs::read_to_string(&path).unwrap(),
            &path.display().to_string(),
        );
        n += 1;
    }
    assert_eq!(n, 3);
}

fn get<'a>(y: &'a Yaml, path: &[&str]) -> &'a Yaml {
    path.iter().fold(y, |y, k| &y[*k])
}

#[test]
fn the_indexed_job_parses_and_its_counts_agree() {
    let path = Path::new(ROOT).join("deploy/k8s/eval-indexed-job.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    assert_eq!(docs.len(), 2);
    let shards = &docs[0];
    assert_eq!(shards["kind"].as_str(), Some("Job"));
    assert_eq!(
        get(shards, &["spec", "completionMode"]).as_str(),
        Some("Indexed")
    );
    let completions = get(shards, &["spec", "completions"]).as_i64().unwrap();
    assert_eq!(
        get(shards, &["spec", "parallelism"]).as_i64(),
        Some(completions)
    );
    let env_shards = |doc: &Yaml, container: &str| -> i64 {
        let pod = get(doc, &["spec", "template", "spec"]);
        let list = pod[container].as_vec().unwrap();
        let env = list[0]["env"].as_vec().unwrap();
        env.iter()
            .find(|e| e["name"].as_str() == Some("SHARDS"))
            .and_then(|e| e["value"].as_str())
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(env_shards(shards, "containers"), completions);
    assert_eq!(env_shards(&docs[1], "initContainers"), completions);
    let args = get(shards, &["spec", "template", "spec"])["containers"][0]["args"][0]
        .as_str()
        .unwrap();
    assert!(
        args.contains("--shard \"$JOB_COMPLETION_INDEX/$SHARDS\""),
        "{args}"
    );
    flags_exist(&text, "eval-indexed-job.yaml");
}
