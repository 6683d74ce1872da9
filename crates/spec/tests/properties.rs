//! Property tests over generated specs: validity, round trips, order independence, and that
//! every single invalid mutation is rejected with an error naming its field.

use kiln_spec::strategies::{invalid_spec, valid_spec};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_specs_validate(spec in valid_spec(1..=12)) {
        let result = spec.validate();
        prop_assert!(result.is_ok(), "{:#?}", result.err());
    }

    #[test]
    fn plan_to_toml_and_back_is_the_identity(spec in valid_spec(1..=12)) {
        let (plan, _) = spec.validate().map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let text = plan.to_spec().to_toml();
        let loaded = kiln_spec::load(&text, "round-trip.toml")
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(loaded.plan, plan);
    }

    #[test]
    fn plan_does_not_depend_on_node_order(spec in valid_spec(2..=12), seed in any::<u64>()) {
        let (plan, _) = spec.validate().map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        // Pod subnets are explicit in a plan's spec, so reordering nodes must not change anything.
        let mut explicit = plan.to_spec();
        let count = explicit.nodes.len();
        let mut state = seed;
        for index in (1..count).rev() {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            explicit.nodes.swap(index, (state >> 33) as usize % (index + 1));
        }
        let (shuffled, _) = explicit.validate().map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(shuffled, plan);
    }

    #[test]
    fn every_invalid_mutation_names_its_field((spec, mutation) in invalid_spec(1..=8)) {
        let errors = spec.validate().err().unwrap_or_default();
        prop_assert!(
            errors.iter().any(|error| error.field == mutation.field),
            "{} should name {} but gave {:#?}", mutation.rule, mutation.field, errors
        );
        // Through the file, the same error must also carry a line and column.
        let text = spec.to_toml();
        let located = kiln_spec::load(&text, "mutated.toml").err().unwrap_or_default();
        prop_assert!(
            located.errors().any(|error| error.field == mutation.field && error.location.is_some()),
            "{}: {}", mutation.rule, located
        );
    }
}
