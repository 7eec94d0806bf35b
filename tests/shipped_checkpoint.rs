//! The checkpoint the quickstart ships loads from a fresh clone, is the model its run file
//! describes (the same architecture and the same fitted codec, bit for bit), and generates.

#![allow(clippy::unwrap_used)]

use echo4o::experiment::{RunConfig, preset_model};
use echo4o::model::autoencoder::LatentCodec;
use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::burn::tensor::{Tensor, TensorData};
use echo4o::model::pipeline::BagelPipeline;
use echo4o::model::{BackendTask, DeviceSpec};

/// The run file of the shipped model.
const SHIPPED_RUN: &str = "configs/shapes_echo.json";

struct Check;

impl BackendTask for Check {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = root.join("checkpoints/shapes_echo");
        let pipe = BagelPipeline::<B>::load(&dir, &device).unwrap();
        // The run file it was trained from, shipped beside it and in configs/.
        let run = RunConfig::from_file(&dir.join("run.json")).unwrap();
        let mut shipped = RunConfig::from_file(&root.join(SHIPPED_RUN)).unwrap();
        shipped.out = run.out.clone();
        assert_eq!(run, shipped, "{SHIPPED_RUN} is not the shipped model's run");
        let (mut want, codec) = preset_model::<B>(&run, &device).unwrap();
        want.tokens = pipe.config.tokens;
        assert_eq!(pipe.config, want);
        let render = echo4o::core::resize::to_chw_pixels(
            &echo4o::data::shapes::Scene {
                width: 64,
                height: 64,
                background: echo4o::data::shapes::Background::Cluttered,
                layout: Default::default(),
                seed: 5,
                objects: vec![],
            }
            .render(),
        );
        let x = Tensor::<B, 4>::from_data(TensorData::new(render, [1, 3, 64, 64]), &device);
        assert_eq!(
            pipe.vae.encode(x.clone(), None).into_data(),
            codec.encode(x, None).into_data(),
            "the shipped codec is not the fit of its run file"
        );
        let img = echo4o::experiment::generate(&pipe, "a photo of a red circle", 0, 64).unwrap();
        assert_eq!(img.dimensions(), (64, 64));
    }
}

#[test]
fn the_shipped_checkpoint_loads_is_its_run_and_generates() {
    DeviceSpec::Flex.run(Check).unwrap();
}
