//! Whether an answer's results fit the request: one per operation, each of a kind its
//! operation gives.

use crate::kv::{Op, OpResult};

/// None where `results` fit `ops`; else what is wrong, for the error.
pub(super) fn misfit(ops: &[Op], results: &[OpResult]) -> Option<String> {
    if results.len() != ops.len() {
        return Some(format!(
            "{} results to a request of {} operations",
            results.len(),
            ops.len()
        ));
    }
    let (at, (op, result)) = ops
        .iter()
        .zip(results)
        .enumerate()
        .find(|(_, (op, result))| !fits(op, result))?;
    Some(format!("{result:?} to operation {at}, a {}", op_name(op)))
}

fn fits(op: &Op, result: &OpResult) -> bool {
    match op {
        Op::Get { .. } => matches!(result, OpResult::Value(_) | OpResult::NotFound),
        Op::Put { .. } => matches!(result, OpResult::Written),
        Op::Delete { .. } => matches!(result, OpResult::Written | OpResult::NotFound),
        Op::CompareAndSwap { .. } | Op::PutIfAbsent { .. } => {
            matches!(result, OpResult::Written | OpResult::ConditionFailed { .. })
        }
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Get { .. } => "get",
        Op::Put { .. } => "put",
        Op::Delete { .. } => "delete",
        Op::CompareAndSwap { .. } => "compare-and-swap",
        Op::PutIfAbsent { .. } => "put-if-absent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn results_fit_only_one_per_operation_of_its_kind() {
        let key = Bytes::from_static(b"k");
        let get = Op::Get { key: key.clone() };
        let put = Op::Put {
            key: key.clone(),
            value: Bytes::from_static(b"v"),
        };
        let value = OpResult::Value(Bytes::from_static(b"v"));
        let one = |op: &Op, result: &OpResult| {
            misfit(std::slice::from_ref(op), std::slice::from_ref(result))
        };
        assert_eq!(one(&get, &value), None);
        assert_eq!(one(&put, &OpResult::Written), None);
        let cases = [
            (
                vec![put.clone()],
                vec![],
                "0 results to a request of 1 operations",
            ),
            (
                vec![put.clone()],
                vec![value.clone()],
                "to operation 0, a put",
            ),
            (
                vec![get.clone(), put],
                vec![value, OpResult::NotFound],
                "operation 1, a put",
            ),
            (
                vec![get],
                vec![OpResult::Written],
                "Written to operation 0, a get",
            ),
        ];
        for (ops, results, said) in cases {
            let why = misfit(&ops, &results).expect("a misfit");
            assert!(why.contains(said), "{why}");
        }
    }
}
