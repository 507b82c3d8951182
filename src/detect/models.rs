//! The three ONNX models (trained by `onnx/train.py`) run with tract: loaded and optimised once,
//! run once a step. A missing, corrupt or wrong-shaped file is reported with its path and that
//! model is off (the forest and the rules carry on); a file replaced on disk is picked up at the
//! next step without a restart.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tract_onnx::prelude::*;

use super::features::{SEQ_FEATURES, WINDOW};

pub const HORIZON: usize = 15;
pub const CLASSES: [&str; 5] = ["normal", "spike", "level_shift", "jitter", "dropout"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Forecaster,
    Autoencoder,
    Classifier,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Forecaster, Kind::Autoencoder, Kind::Classifier];

    pub fn file_name(self) -> &'static str {
        match self {
            Kind::Forecaster => "forecaster.onnx",
            Kind::Autoencoder => "autoencoder.onnx",
            Kind::Classifier => "classifier.onnx",
        }
    }

    fn input_shape(self) -> &'static [usize] {
        match self {
            Kind::Forecaster => &[1, WINDOW, SEQ_FEATURES],
            _ => &[1, 2 * WINDOW],
        }
    }

    fn output_len(self) -> usize {
        match self {
            Kind::Forecaster => HORIZON * 3,
            Kind::Autoencoder => WINDOW,
            Kind::Classifier => CLASSES.len(),
        }
    }

    fn builtin(self) -> &'static [u8] {
        match self {
            Kind::Forecaster => include_bytes!("../../onnx/models/forecaster.onnx"),
            Kind::Autoencoder => include_bytes!("../../onnx/models/autoencoder.onnx"),
            Kind::Classifier => include_bytes!("../../onnx/models/classifier.onnx"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("model {path} ran but failed: {reason}")]
    Run { path: String, reason: String },
}

/// Where the models come from: compiled into the binary, or a directory watched for changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Builtin,
    Dir(PathBuf),
}

impl Source {
    /// `[detect] models` and `replay --models`: "builtin" or a folder.
    pub fn parse(s: &str) -> Source {
        if s == "builtin" { Source::Builtin } else { Source::Dir(PathBuf::from(s)) }
    }
}

pub struct Model {
    kind: Kind,
    plan: Arc<TypedSimplePlan>,
    origin: String,
}

impl Model {
    pub fn from_bytes(kind: Kind, bytes: &[u8], origin: &str) -> Result<Model, ModelError> {
        let err = |reason: String| ModelError::Load { path: origin.to_string(), reason };
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| err(format!("not a usable ONNX model ({e:#})")))?;
        let model = Model { kind, plan, origin: origin.to_string() };
        // A model of the wrong shape loads fine and fails later: try it once now, on zeros.
        let n: usize = kind.input_shape().iter().product();
        let out = model.run(&vec![0.0; n]).map_err(|e| err(e.to_string()))?;
        if out.len() != kind.output_len() || out.iter().any(|v| !v.is_finite()) {
            return Err(err(format!(
                "expected {} finite outputs from a {:?} input, got {}",
                kind.output_len(),
                kind.input_shape(),
                out.len()
            )));
        }
        Ok(model)
    }

    pub fn from_path(kind: Kind, path: &Path) -> Result<Model, ModelError> {
        let bytes = std::fs::read(path)
            .map_err(|e| ModelError::Load { path: path.display().to_string(), reason: e.to_string() })?;
        Model::from_bytes(kind, &bytes, &path.display().to_string())
    }

    /// Runs on one input (flattened, row-major) and returns the flattened output.
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>, ModelError> {
        let err = |reason: String| ModelError::Run { path: self.origin.clone(), reason };
        let tensor = Tensor::from_shape(self.kind.input_shape(), input).map_err(|e| err(format!("{e:#}")))?;
        let out = self.plan.run(tvec!(tensor.into_tvalue())).map_err(|e| err(format!("{e:#}")))?;
        let view = out[0].to_plain_array_view::<f32>().map_err(|e| err(format!("{e:#}")))?;
        Ok(view.iter().copied().collect())
    }
}

struct Slot {
    kind: Kind,
    /// Loaded at all: a model the line-up does not use costs neither memory nor load time.
    wanted: bool,
    model: Option<Model>,
    /// What the file looked like when last read (modified time, length): reload when it changes.
    seen: Option<(Option<SystemTime>, u64)>,
    error: Option<String>,
}

/// The three models, each possibly off.
pub struct Models {
    source: Source,
    slots: Vec<Slot>,
}

impl Models {
    /// Never fails: each model that cannot be loaded is off, with its error kept for `problems`.
    pub fn load(source: Source) -> Models {
        Models::load_only(source, |_| true)
    }

    /// Like [`Models::load`], for the models `wanted` picks only (the others stay off, quietly).
    pub fn load_only(source: Source, wanted: impl Fn(Kind) -> bool) -> Models {
        let slots = Kind::ALL
            .iter()
            .map(|&kind| Slot { kind, wanted: wanted(kind), model: None, seen: None, error: None })
            .collect();
        let mut models = Models { source, slots };
        models.refresh();
        models
    }

    /// Re-reads any model file that changed (or appeared, or vanished). Returns one message per
    /// change, for the log.
    pub fn refresh(&mut self) -> Vec<String> {
        let mut messages = Vec::new();
        for slot in self.slots.iter_mut().filter(|s| s.wanted) {
            let (result, seen) = match &self.source {
                Source::Builtin => {
                    if slot.seen.is_some() {
                        continue;
                    }
                    (Model::from_bytes(slot.kind, slot.kind.builtin(), slot.kind.file_name()), Some((None, 0)))
                }
                Source::Dir(dir) => {
                    let path = dir.join(slot.kind.file_name());
                    let seen = std::fs::metadata(&path).ok().map(|m| (m.modified().ok(), m.len()));
                    if seen == slot.seen && (slot.model.is_some() || slot.error.is_some()) {
                        continue;
                    }
                    (Model::from_path(slot.kind, &path), seen)
                }
            };
            slot.seen = seen;
            match result {
                Ok(m) => {
                    messages.push(format!("loaded {}", m.origin));
                    slot.model = Some(m);
                    slot.error = None;
                }
                Err(e) => {
                    messages.push(format!("{e}; {:?} is off, the forest and the rules carry on", slot.kind));
                    slot.model = None;
                    slot.error = Some(e.to_string());
                }
            }
        }
        messages
    }

    pub fn get(&self, kind: Kind) -> Option<&Model> {
        self.slots.iter().find(|s| s.kind == kind).and_then(|s| s.model.as_ref())
    }

    /// Errors of the models that are off.
    pub fn problems(&self) -> Vec<String> {
        self.slots.iter().filter_map(|s| s.error.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_models_load_and_run() {
        let models = Models::load(Source::Builtin);
        assert!(models.problems().is_empty(), "{:?}", models.problems());
        for kind in Kind::ALL {
            assert!(models.get(kind).is_some(), "{kind:?}");
        }
    }

    #[test]
    fn missing_corrupt_and_wrong_models_are_named_and_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut models = Models::load(Source::Dir(dir.path().to_path_buf()));
        assert_eq!(models.problems().len(), 3);
        assert!(models.problems()[0].contains("forecaster.onnx"), "{:?}", models.problems());
        // garbage, and the classifier's file where the forecaster should be
        std::fs::write(dir.path().join("forecaster.onnx"), Kind::Classifier.builtin()).unwrap();
        std::fs::write(dir.path().join("autoencoder.onnx"), b"\x08\x07garbage").unwrap();
        std::fs::write(dir.path().join("classifier.onnx"), Kind::Classifier.builtin()).unwrap();
        let msgs = models.refresh();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(models.get(Kind::Forecaster).is_none());
        assert!(models.get(Kind::Autoencoder).is_none());
        assert!(models.get(Kind::Classifier).is_some());
        let problems = models.problems().join("\n");
        assert!(problems.contains("autoencoder.onnx: not a usable ONNX model"), "{problems}");
        assert!(problems.contains("forecaster.onnx"), "{problems}");
        // nothing changed: nothing reloaded
        assert!(models.refresh().is_empty());
        // fixed on disk: picked up
        std::fs::write(dir.path().join("forecaster.onnx"), Kind::Forecaster.builtin()).unwrap();
        let msgs = models.refresh();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert!(models.get(Kind::Forecaster).is_some());
    }
}
