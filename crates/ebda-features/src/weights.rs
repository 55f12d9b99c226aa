//! Reading pretrained backbone weights: PyTorch `.pth` and `.safetensors`.
//!
//! - `.pth` / `.pt` / `.bin`: PyTorch's zip serialisation (`torch.save`
//!   since PyTorch 1.6), read with candle's pickle reader. A plain
//!   `state_dict` is read as is; a checkpoint that nests it under
//!   `state_dict` or `model` is read from there. The legacy (non-zip)
//!   format is refused with the one-line conversion that fixes it.
//! - `.safetensors`: timm's files use torchvision's key names; Hugging Face
//!   transformers' `ResNetModel` files (`resnet.embedder…`,
//!   `resnet.encoder.stages.{s}.layers.{i}.{layer.{j},shortcut}.{convolution,normalization}`)
//!   are mapped onto torchvision's names by [`to_torchvision`].
//!
//! Every failure names the file. Tensors come back on the CPU in the
//! file's dtype; [`crate::ResNet::load`] converts them.

use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::path::Path;

/// The leading bytes of a zip archive (`PK\x03\x04`).
const ZIP_MAGIC: [u8; 4] = *b"PK\x03\x04";
/// The leading bytes of a safetensors header (an 8-byte length) are not
/// fixed, so the format is told by the extension.
const SAFETENSORS_EXT: &str = "safetensors";

fn weights_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Weights {
        file: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Reads every tensor of a weights file (names as stored).
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let meta =
        std::fs::metadata(path).map_err(|e| weights_err(path, format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(weights_err(path, "is not a file"));
    }
    let is_safetensors = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(SAFETENSORS_EXT));
    let tensors = if is_safetensors {
        let map = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| weights_err(path, format!("not a readable safetensors file: {e}")))?;
        map.into_iter().collect::<Vec<_>>()
    } else {
        read_pth(path)?
    };
    if tensors.is_empty() {
        return Err(weights_err(path, "holds no tensors"));
    }
    for (name, t) in &tensors {
        let bad = ebda_nn::non_finite_count(t)
            .map_err(|e| weights_err(path, format!("tensor {name:?}: {e}")))?;
        if bad > 0 {
            return Err(weights_err(
                path,
                format!(
                    "{name} holds a non-finite value ({bad} of its {} values are NaN or ±inf)",
                    t.elem_count()
                ),
            ));
        }
    }
    Ok(tensors)
}

fn read_pth(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let mut head = [0u8; 4];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path)
            .map_err(|e| weights_err(path, format!("cannot open: {e}")))?;
        let n = f
            .read(&mut head)
            .map_err(|e| weights_err(path, format!("cannot read: {e}")))?;
        if n < 4 {
            return Err(weights_err(
                path,
                format!("is {n} bytes long: not a PyTorch file"),
            ));
        }
    }
    if head != ZIP_MAGIC {
        return Err(weights_err(
            path,
            format!(
                "is not a zip-format PyTorch file (starts with {head:02x?}, expected {ZIP_MAGIC:02x?}): \
                 it was saved in the legacy format (torch < 1.6 or _use_new_zipfile_serialization=False). \
                 Convert it with: python -c \"import torch; torch.save(torch.load('{p}', map_location='cpu'), '{p}.zip.pth')\"",
                p = path.display()
            ),
        ));
    }
    // candle's reader allocates what the archive declares before reading
    // it: bound every declared size by the archive first.
    crate::pth_check::check_pickles(path).map_err(|e| {
        weights_err(
            path,
            format!("not a readable PyTorch file (truncated or corrupt?): {e}"),
        )
    })?;
    // candle's pickle reader is not hardened against every malformed
    // archive: a panic inside it becomes an error naming the file.
    let read_key = |key: Option<&str>| -> Result<Vec<(String, Tensor)>> {
        let owned = path.to_path_buf();
        let key = key.map(str::to_string);
        std::panic::catch_unwind(move || {
            let infos = candle_core::pickle::read_pth_tensor_info(&owned, false, key.as_deref())?;
            crate::pth_check::check_tensor_sizes(&owned, &infos)
                .map_err(candle_core::Error::msg)?;
            candle_core::pickle::read_all_with_key(&owned, key.as_deref())
        })
        .map_err(|_| {
            weights_err(
                path,
                "the PyTorch reader failed on this file (malformed pickle)",
            )
        })?
        .map_err(|e| {
            weights_err(
                path,
                format!("not a readable PyTorch file (truncated or corrupt?): {e}"),
            )
        })
    };
    let plain = read_key(None)?;
    if !plain.is_empty() {
        return Ok(plain);
    }
    for key in ["state_dict", "model"] {
        if let Ok(nested) = read_key(Some(key))
            && !nested.is_empty()
        {
            return Ok(nested);
        }
    }
    Ok(plain)
}

/// Maps key names onto torchvision's ResNet names and drops what a feature
/// extractor does not use: the classifier (`fc.*`, `classifier.*`) and
/// `num_batches_tracked` counters. Accepts torchvision / timm names (also
/// under a `module.` or `model.` prefix, as `DataParallel` and some training
/// scripts save them) and Hugging Face transformers' `ResNetModel` names.
pub fn to_torchvision(tensors: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    tensors
        .into_iter()
        .filter_map(|(k, t)| {
            let k = k
                .strip_prefix("module.")
                .or_else(|| k.strip_prefix("model."))
                .unwrap_or(&k)
                .to_string();
            let k = match k.strip_prefix("resnet.") {
                Some(rest) => hf_to_torchvision(rest).unwrap_or(k.clone()),
                None => k,
            };
            let dropped = k.ends_with("num_batches_tracked")
                || k.starts_with("fc.")
                || k.starts_with("classifier.");
            (!dropped).then_some((k, t))
        })
        .collect()
}

/// `embedder.embedder.{convolution,normalization}.v` → `conv1.v` / `bn1.v`;
/// `encoder.stages.{s}.layers.{i}.layer.{j}.{convolution,normalization}.v`
/// → `layer{s+1}.{i}.{conv,bn}{j+1}.v`;
/// `encoder.stages.{s}.layers.{i}.shortcut.{convolution,normalization}.v`
/// → `layer{s+1}.{i}.downsample.{0,1}.v`. Anything else is left unmapped
/// (and will be reported as unexpected).
fn hf_to_torchvision(rest: &str) -> Option<String> {
    let part = |p: &str| match p {
        "convolution" => Some(("conv", "0")),
        "normalization" => Some(("bn", "1")),
        _ => None,
    };
    let parts: Vec<&str> = rest.split('.').collect();
    match parts.as_slice() {
        ["embedder", "embedder", p, v] => Some(format!("{}1.{v}", part(p)?.0)),
        ["encoder", "stages", s, "layers", i, "layer", j, p, v] => {
            let s: usize = s.parse().ok()?;
            let j: usize = j.parse().ok()?;
            Some(format!("layer{}.{i}.{}{}.{v}", s + 1, part(p)?.0, j + 1))
        }
        ["encoder", "stages", s, "layers", i, "shortcut", p, v] => {
            let s: usize = s.parse().ok()?;
            Some(format!("layer{}.{i}.downsample.{}.{v}", s + 1, part(p)?.1))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use std::collections::HashMap;

    #[test]
    fn weights_holding_nan_or_inf_are_refused_naming_the_tensor() {
        let dir = std::env::temp_dir().join(format!("ebda-weights-nan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (bad, what) in [(f32::NAN, "nan"), (f32::INFINITY, "inf")] {
            let path = dir.join(format!("{what}.safetensors"));
            let good = Tensor::ones((2, 3), DType::F32, &Device::Cpu).unwrap();
            let broken = Tensor::new(&[1.0f32, bad, 2.0], &Device::Cpu).unwrap();
            candle_core::safetensors::save(
                &HashMap::from([
                    ("conv1.weight".to_string(), good),
                    ("fc.bias".to_string(), broken),
                ]),
                &path,
            )
            .unwrap();
            let err = read(&path).unwrap_err().to_string();
            assert!(
                err.contains("fc.bias holds a non-finite value (1 of its 3 values"),
                "{err}"
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    fn names(keys: &[&str]) -> Vec<String> {
        let t = Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap();
        to_torchvision(keys.iter().map(|k| (k.to_string(), t.clone())).collect())
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    #[test]
    fn hugging_face_names_map_to_torchvision() {
        assert_eq!(
            names(&[
                "resnet.embedder.embedder.convolution.weight",
                "resnet.embedder.embedder.normalization.running_var",
                "resnet.embedder.embedder.normalization.num_batches_tracked",
                "resnet.encoder.stages.0.layers.0.shortcut.convolution.weight",
                "resnet.encoder.stages.0.layers.0.shortcut.normalization.bias",
                "resnet.encoder.stages.3.layers.2.layer.2.convolution.weight",
                "resnet.encoder.stages.1.layers.1.layer.0.normalization.weight",
                "classifier.1.weight",
                "resnet.pooler.weird",
            ]),
            [
                "conv1.weight",
                "bn1.running_var",
                "layer1.0.downsample.0.weight",
                "layer1.0.downsample.1.bias",
                "layer4.2.conv3.weight",
                "layer2.1.bn1.weight",
                "resnet.pooler.weird",
            ]
        );
    }

    #[test]
    fn torchvision_and_timm_names_pass_and_the_classifier_is_dropped() {
        assert_eq!(
            names(&[
                "module.conv1.weight",
                "model.layer1.0.bn1.weight",
                "layer4.1.downsample.1.running_mean",
                "bn1.num_batches_tracked",
                "fc.weight",
                "fc.bias",
            ]),
            [
                "conv1.weight",
                "layer1.0.bn1.weight",
                "layer4.1.downsample.1.running_mean"
            ]
        );
    }
}
