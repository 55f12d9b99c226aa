//! Named, ordered access to the variables of a `VarMap`.
//!
//! `VarMap::all_vars` iterates a hash map, so its order changes from run to
//! run; optimizers and checkpoints need a fixed order and stable names.
//! Batch-norm running statistics live in the map too (candle keeps them as
//! `Var`s) but are buffers, not parameters: no optimizer may move them.

use candle_core::{Tensor, Var};
use candle_nn::VarMap;

/// Whether a variable name denotes a buffer (batch-norm running statistics).
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

/// All variables of `map`, sorted by name.
pub fn named_vars(map: &VarMap) -> Vec<(String, Var)> {
    let data = map.data().lock().unwrap_or_else(|p| p.into_inner());
    let mut vars: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// The trainable variables of `map` (buffers excluded), sorted by name.
pub fn trainable_vars(map: &VarMap) -> Vec<(String, Var)> {
    named_vars(map)
        .into_iter()
        .filter(|(n, _)| !is_buffer(n))
        .collect()
}

/// Number of trainable scalars in `map`.
pub fn parameter_count(map: &VarMap) -> usize {
    trainable_vars(map)
        .iter()
        .map(|(_, v)| v.elem_count())
        .sum()
}

/// Number of NaN or ±∞ values in `t` (0 for integer tensors). Used to refuse
/// weights and checkpoints that hold them, at load time.
pub fn non_finite_count(t: &Tensor) -> candle_core::Result<usize> {
    if !t.dtype().is_float() {
        return Ok(0);
    }
    let v: Vec<f32> = t
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    Ok(v.iter().filter(|x| !x.is_finite()).count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{batch_norm, linear, seeded_var_builder};
    use candle_core::{DType, Device};

    #[test]
    fn buffers_are_not_parameters() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 0, DType::F32, &Device::Cpu);
        linear(3, 4, vb.pp("b")).unwrap();
        batch_norm(4, vb.pp("a")).unwrap();
        let names: Vec<String> = named_vars(&map).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "a.bias",
                "a.running_mean",
                "a.running_var",
                "a.weight",
                "b.bias",
                "b.weight"
            ]
        );
        assert_eq!(trainable_vars(&map).len(), 4);
        assert_eq!(parameter_count(&map), 4 + 4 + 12 + 4);
    }
}
