//! The checkpoint the quickstart ships loads from a fresh clone and generates.

#![allow(clippy::unwrap_used)]

use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::pipeline::BagelPipeline;
use echo4o::model::{BackendTask, DeviceSpec};

struct Check;

impl BackendTask for Check {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/shapes_echo");
        let pipe = BagelPipeline::<B>::load(&dir, &device).unwrap();
        let mut want = echo4o::experiment::tiny_shapes_config();
        want.tokens = pipe.config.tokens;
        assert_eq!(pipe.config, want);
        let img = echo4o::experiment::generate(&pipe, "a photo of a red circle", 0, 64).unwrap();
        assert_eq!(img.dimensions(), (64, 64));
    }
}

#[test]
fn the_shipped_checkpoint_loads_and_generates() {
    DeviceSpec::Flex.run(Check).unwrap();
}
