//! `echo4o train` end to end: a short run writes a loadable checkpoint, a log and a sample grid,
//! a second invocation resumes it, and a bad run file names what is wrong.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn write_config(dir: &std::path::Path, preset: &str) -> std::path::PathBuf {
    let config = serde_json::json!({
        "out": dir.join("run"),
        "model": {"preset": preset},
        "data": {"shapes": {"mix": [["web", 0.5], ["multiref", 0.5]], "size": 64, "seed": 3}},
        "train": {"steps": 2, "batch_size": 2, "warmup_steps": 1},
        "checkpoint_every": 1,
        "sample_every": 0,
        "sample_prompts": ["a photo of a red circle"]
    });
    let path = dir.join("run.json");
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    path
}

/// The base run file with `edit` applied.
fn edited_config(
    dir: &std::path::Path,
    edit: impl FnOnce(&mut serde_json::Value),
) -> std::path::PathBuf {
    let config = write_config(dir, "tiny-shapes");
    let mut run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    edit(&mut run);
    std::fs::write(&config, run.to_string()).unwrap();
    config
}

/// `echo4o train --config CONFIG [extra...]`, which must succeed.
fn train_ok(config: &std::path::Path, extra: &[&str]) {
    let mut args = vec!["train", "--config", config.to_str().unwrap()];
    args.extend(extra);
    let out = echo4o(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json_file(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn echo4o(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_echo4o"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_run_trains_saves_samples_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "tiny-shapes");
    let first = echo4o(&["train", "--config", config.to_str().unwrap()]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let run = dir.path().join("run");
    for f in [
        "ema.safetensors",
        "llm_config.json",
        "ae_config.json",
        "tokenizer.json",
        "train_state/state.json",
        "samples/step_000002.png",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    // A run killed after its last checkpoint had logged a step the resumed run takes again,
    // and the kill cut its last line short.
    let log_path = run.join("train_log.jsonl");
    let mut log = std::fs::read_to_string(&log_path).unwrap();
    log.push_str(
        "{\"step\":3,\"loss\":9.0,\"mse\":9.0,\"lr\":0.001,\"seconds\":1.0}\n{\"step\":4,\"lo",
    );
    std::fs::write(&log_path, log).unwrap();
    let second = echo4o(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--steps",
        "3",
    ]);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(String::from_utf8_lossy(&second.stderr).contains("at step 2"));
    let log = std::fs::read_to_string(run.join("train_log.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        steps,
        [1, 2, 3],
        "each step logged once, by the run that took it"
    );
    // By its loss: a substring check also matched a real step's `"seconds":9.012` on a loaded
    // machine.
    let losses: Vec<f64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert!(
        losses.iter().all(|&l| l != 9.0),
        "the killed run's step 3 is gone: {log}"
    );
    // The checkpoint generates.
    let out = dir.path().join("img.png");
    let gen_ = echo4o(&[
        "generate",
        "--model",
        run.to_str().unwrap(),
        "--prompt",
        "a red circle",
        "--size",
        "64x64",
        "--steps",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        gen_.status.success(),
        "{}",
        String::from_utf8_lossy(&gen_.stderr)
    );
    assert!(out.is_file());
}

#[test]
fn bad_run_files_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "huge");
    let out = echo4o(&["train", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("model.preset") && err.contains("huge"),
        "{err}"
    );

    let path = dir.path().join("typo.json");
    std::fs::write(
        &path,
        r#"{"out": "x", "model": {"preset": "tiny-shapes"}, "data": {"path": "y"}, "trian": {}}"#,
    )
    .unwrap();
    let out = echo4o(&["train", "--config", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("typo.json") && err.contains("trian"),
        "{err}"
    );
}

#[test]
fn out_of_range_values_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let base = write_config(dir.path(), "tiny-shapes");
    let text = std::fs::read_to_string(&base).unwrap();
    for (edit, named) in [
        (("\"size\": 64", "\"size\": 0"), "data.shapes.size"),
        (("\"size\": 64", "\"size\": 4096"), "data.shapes.size"),
        (
            (
                "\"warmup_steps\": 1",
                "\"warmup_steps\": 1, \"text_dropout\": 7",
            ),
            "train.text_dropout",
        ),
        (
            ("\"warmup_steps\": 1", "\"warmup_steps\": 1, \"lr\": 1e300"),
            "train.lr",
        ),
    ] {
        assert!(text.contains(edit.0));
        let path = dir.path().join("bad.json");
        std::fs::write(&path, text.replace(edit.0, edit.1)).unwrap();
        let out = echo4o(&["train", "--config", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{named}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(named) && err.contains("bad.json"),
            "{named}: {err}"
        );
        assert!(
            !dir.path().join("run").exists(),
            "{named}: nothing is created"
        );
    }
}

#[test]
fn resuming_with_changed_settings_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "tiny-shapes");
    let first = echo4o(&["train", "--config", config.to_str().unwrap()]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let state = std::fs::read(dir.path().join("run/train_state/state.json")).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"warmup_steps\": 1", "\"warmup_steps\": 1, \"lr\": 0.0005"),
    )
    .unwrap();
    let again = echo4o(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--steps",
        "3",
    ]);
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("train.lr") && err.contains("other settings"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("run/train_state/state.json")).unwrap(),
        state
    );
}

#[test]
fn a_run_can_give_its_preset_a_word_level_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let config = edited_config(dir.path(), |run| {
        run["tokenizer"] = "words".into();
        run["train"]["steps"] = 1.into();
    });
    train_ok(&config, &[]);
    let tok = json_file(&dir.path().join("run/tokenizer.json"));
    assert_eq!(tok["model"]["type"], "WordLevel");
    for word in ["circle", "purple", "left", "photo", "three"] {
        assert!(tok["model"]["vocab"].get(word).is_some(), "{word} missing");
    }
}

#[test]
fn a_run_can_give_its_preset_a_fitted_linear_codec_and_resume_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = edited_config(dir.path(), |run| {
        run["codec"] = serde_json::json!(
            {"linear": {"patch": 4, "channels": 12, "latent_patch": 2, "images": 8}}
        );
        run["train"]["steps"] = 1.into();
        run["train"]["lr_end"] = 1e-4.into();
    });
    let run = json_file(&config);
    train_ok(&config, &[]);
    let ae = json_file(&dir.path().join("run/ae_config.json"));
    assert_eq!(ae["codec"], "linear");
    assert_eq!(ae["z_channels"], 12);
    let weights = std::fs::read(dir.path().join("run/ae.safetensors")).unwrap();
    // Resuming loads the fitted codec from the checkpoint: it is not fit again.
    train_ok(&config, &["--steps", "2"]);
    assert_eq!(
        std::fs::read(dir.path().join("run/ae.safetensors")).unwrap(),
        weights
    );

    for (codec, named) in [
        (
            serde_json::json!({"linear": {"patch": 3, "channels": 12}}),
            "codec.linear.patch",
        ),
        (
            serde_json::json!({"linear": {"patch": 4, "channels": 49}}),
            "codec.linear.channels",
        ),
        (
            serde_json::json!({"linear": {"patch": 4, "channels": 8, "images": 0}}),
            "codec.linear.images",
        ),
        (
            serde_json::json!({"linear": {"patch": 32, "channels": 8, "latent_patch": 4}}),
            "codec.linear",
        ),
    ] {
        let mut bad = run.clone();
        bad["codec"] = codec;
        bad["out"] = dir.path().join("bad_run").to_str().unwrap().into();
        let path = dir.path().join("bad.json");
        std::fs::write(&path, bad.to_string()).unwrap();
        let out = echo4o(&["train", "--config", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{named}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{named}: {err}");
        assert!(!dir.path().join("bad_run").exists(), "{named}");
    }
}
