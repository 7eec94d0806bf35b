//! Loading and saving weights with the official key names, through burn-store.
//!
//! Module fields carry the upstream names, so a module path equals a checkpoint key; the only
//! remaps are real convention gaps (PyTorch `weight`/`bias` of norms <-> burn `gamma`/`beta`,
//! Linear transposition, handled by burn-store's PyTorch adapters, and `time_embedder.mlp.2`,
//! the upstream index after a weightless SiLU, which is burn's `mlp.1`). Loading is strict:
//! every missing, unexpected or mis-shaped key is reported by name.

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::ToElement;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn_store::{
    BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};

use crate::Error;

/// A key rename between checkpoint (`official`) and module (`module`) names, as regexes.
#[derive(Debug, Clone, Copy)]
pub struct Remap {
    /// Pattern in the checkpoint's naming, and its module-side replacement.
    pub to_module: (&'static str, &'static str),
    /// The reverse, for saving.
    pub to_official: (&'static str, &'static str),
}

/// Norm layers: PyTorch `weight`/`bias`, burn `gamma`/`beta`. Every norm module of BAGEL, the
/// ViT and the FLUX autoencoder has `norm` in its name (`input_layernorm`, `q_norm`,
/// `layer_norm1`, `norm_out`, ...), and no other module does.
pub const NORM_REMAPS: &[Remap] = &[
    Remap {
        to_module: (r"^(.*norm[a-z_0-9]*)\.weight$", "$1.gamma"),
        to_official: (r"^(.*norm[a-z_0-9]*)\.gamma$", "$1.weight"),
    },
    Remap {
        to_module: (r"^(.*norm[a-z_0-9]*)\.bias$", "$1.beta"),
        to_official: (r"^(.*norm[a-z_0-9]*)\.beta$", "$1.bias"),
    },
];

/// BAGEL's remaps: the norms, and upstream `time_embedder.mlp.{0,2}` vs burn's `mlp.{0,1}`.
pub const BAGEL_REMAPS: &[Remap] = &[
    NORM_REMAPS[0],
    NORM_REMAPS[1],
    Remap {
        to_module: (r"^time_embedder\.mlp\.2\.", "time_embedder.mlp.1."),
        to_official: (r"^time_embedder\.mlp\.1\.", "time_embedder.mlp.2."),
    },
];

/// Loads `path` (safetensors, official key names) into `module`, strictly: any key the module has
/// that the file lacks (except those matching `optional`), any key the file has that the module
/// lacks, and any shape mismatch fails with every offending key listed.
pub fn load_safetensors<B: Backend, M: ModuleSnapshot<B>>(
    module: &mut M,
    path: &Path,
    remaps: &[Remap],
    optional: &[&str],
) -> Result<(), Error> {
    load_weights(
        module,
        path,
        &KeyRules {
            remaps,
            optional,
            ..KeyRules::default()
        },
    )
}

/// How a checkpoint's keys meet a module's: the renames, the module keys a file may lack, the
/// file keys the module has no use for, and where a PyTorch pickle keeps its state dict.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyRules<'a> {
    /// Renames between the checkpoint's names and the module's.
    pub remaps: &'a [Remap],
    /// Module keys the file may lack (they keep their initial values).
    pub optional: &'a [&'a str],
    /// Checkpoint keys (official names) skipped instead of reported as unexpected: open_clip's
    /// `logit_scale`, for one, is only read by the contrastive loss.
    pub ignored: &'a [&'a str],
    /// In a PyTorch pickle, the entry of the top-level dict that holds the state dict
    /// (`"state_dict"` in mmdet/mmcv checkpoints); `None` when the top level is the state dict.
    pub state_dict_key: Option<&'a str>,
}

/// The container of a weight file, told by its first bytes rather than its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// safetensors: an 8-byte header length, then a JSON header.
    Safetensors,
    /// `torch.save` output: a zip archive (PyTorch >= 1.6) or a legacy pickle stream.
    PyTorch,
}

impl WeightFormat {
    /// The format of `path`; an unreadable file is an I/O error naming it.
    pub fn detect(path: &Path) -> Result<Self, Error> {
        use std::io::Read;
        let io = |e| Error::Core(echo4o_core::Error::io(path, e));
        let mut head = [0u8; 4];
        let mut file = std::fs::File::open(path).map_err(io)?;
        let n = file.read(&mut head).map_err(io)?;
        Ok(match head[..n] {
            [b'P', b'K', 3, 4, ..] | [0x80, ..] => WeightFormat::PyTorch,
            _ => WeightFormat::Safetensors,
        })
    }
}

/// Loads a checkpoint in either format (see [`WeightFormat`]) into `module`, strictly under
/// `rules`: any module key the file lacks (except `optional`), any file key the module lacks
/// (except `ignored`), and any shape mismatch fails with every offending key listed by its
/// official name.
pub fn load_weights<B: Backend, M: ModuleSnapshot<B>>(
    module: &mut M,
    path: &Path,
    rules: &KeyRules<'_>,
) -> Result<(), Error> {
    if !path.is_file() {
        return Err(Error::Core(echo4o_core::Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "weight file not found"),
        )));
    }
    let failed = |details: String| Error::Weights {
        path: path.display().to_string(),
        details,
    };
    let result = match WeightFormat::detect(path)? {
        WeightFormat::Safetensors => {
            let mut store = SafetensorsStore::from_file(path)
                .with_from_adapter(PyTorchToBurnAdapter)
                .allow_partial(true)
                .validate(true);
            for r in rules.remaps {
                store = store.with_key_remapping(r.to_module.0, r.to_module.1);
            }
            module
                .load_from(&mut store)
                .map_err(|e| failed(e.to_string()))?
        }
        WeightFormat::PyTorch => {
            // No contiguous re-indexing: a checkpoint missing block 5 must say so, not have
            // block 6 loaded in its place.
            let mut store = PytorchStore::from_file(path)
                .map_indices_contiguous(false)
                .allow_partial(true)
                .validate(true);
            if let Some(key) = rules.state_dict_key {
                store = store.with_top_level_key(key);
            }
            for r in rules.remaps {
                store = store.with_key_remapping(r.to_module.0, r.to_module.1);
            }
            module
                .load_from(&mut store)
                .map_err(|e| failed(e.to_string()))?
        }
    };
    let mut problems = Vec::new();
    for e in &result.errors {
        problems.push(format!("  {e}"));
    }
    for (key, _) in &result.missing {
        if !rules.optional.iter().any(|o| key == o) {
            problems.push(format!("  missing: {}", official_name(key, rules.remaps)));
        }
    }
    for key in &result.unused {
        let official = official_name(key, rules.remaps);
        if !rules.ignored.contains(&official.as_str()) {
            problems.push(format!("  unexpected: {official}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(failed(problems.join("\n")))
    }
}

/// The module paths of float parameters holding NaN or infinity, at most `limit` of them.
///
/// A checkpoint with such values loads and runs, and yields an all-black image; loading refuses
/// it instead, and the trainer never saves one.
pub fn non_finite_params<B: Backend, M: Module<B>>(module: &M, limit: usize) -> Vec<String> {
    struct Finder {
        path: Vec<String>,
        found: Vec<String>,
        limit: usize,
    }
    impl<B: Backend> ModuleVisitor<B> for Finder {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if self.found.len() >= self.limit {
                return;
            }
            let all_finite = param.val().is_finite().float().min().into_scalar().to_f32() == 1.0;
            if !all_finite {
                self.found.push(self.path.join("."));
            }
        }
    }
    let mut finder = Finder {
        path: Vec::new(),
        found: Vec::new(),
        limit,
    };
    module.visit(&mut finder);
    finder.found
}

/// [`non_finite_params`] as an error naming the file and the first offending parameters.
pub fn check_finite<B: Backend, M: Module<B>>(module: &M, path: &Path) -> Result<(), Error> {
    let bad = non_finite_params(module, 5);
    if bad.is_empty() {
        return Ok(());
    }
    Err(Error::Weights {
        path: path.display().to_string(),
        details: bad
            .iter()
            .map(|p| format!("  non-finite values (NaN or inf) in {p}"))
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// A module-side key in the checkpoint's naming.
fn official_name(key: &str, remaps: &[Remap]) -> String {
    let mut name = key.to_string();
    for r in remaps {
        if let Ok(re) = regex::Regex::new(r.to_official.0) {
            name = re.replace(&name, r.to_official.1).into_owned();
        }
    }
    name
}

/// Saves `module` to `path` as safetensors with the official key names and layouts (loads back
/// here and in the official PyTorch code).
pub fn save_safetensors<B: Backend, M: ModuleSnapshot<B>>(
    module: &M,
    path: &Path,
    remaps: &[Remap],
) -> Result<(), Error> {
    let mut store = SafetensorsStore::from_file(path)
        .with_to_adapter(BurnToPyTorchAdapter)
        .overwrite(true);
    for r in remaps {
        store = store.with_key_remapping(r.to_official.0, r.to_official.1);
    }
    module.save_into(&mut store).map_err(|e| Error::Weights {
        path: path.display().to_string(),
        details: format!("  cannot save: {e}"),
    })?;
    sort_header_metadata(path).map_err(|e| Error::Weights {
        path: path.display().to_string(),
        details: format!("  cannot normalise the header: {e}"),
    })
}

/// burn-store writes the header's `__metadata__` from a hash map, so its key order changes from
/// run to run and two saves of the same weights differ in a few header bytes. Sorting those keys
/// in place (same length) makes a checkpoint a pure function of its weights: reproduced runs
/// compare equal with `cmp`.
fn sort_header_metadata(path: &Path) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)?;
    let n = u64::from_le_bytes(len) as usize;
    let mut header = vec![0u8; n];
    f.read_exact(&mut header)?;
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(&header) else {
        return Ok(());
    };
    if let Some(serde_json::Value::Object(meta)) = map.get_mut("__metadata__") {
        let mut entries: Vec<(String, serde_json::Value)> =
            std::mem::take(meta).into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        meta.extend(entries);
    }
    let mut text = serde_json::to_vec(&serde_json::Value::Object(map))?;
    if text.len() > n {
        return Ok(());
    }
    text.resize(n, b' ');
    f.seek(SeekFrom::Start(8))?;
    f.write_all(&text)?;
    f.sync_all()
}
