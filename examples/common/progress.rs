//! A progress bar over a training run, shared by the examples that train.

/// A progress bar over a training run's steps, with the running loss.
pub fn progress(steps: usize) -> impl FnMut(&echo4o::experiment::TrainEvent) {
    let bar = indicatif::ProgressBar::new(steps as u64);
    move |e| {
        if let echo4o::experiment::TrainEvent::Step {
            step, mean_loss, ..
        } = e
        {
            bar.set_position(*step as u64);
            bar.set_message(format!("loss {mean_loss:.4}"));
            if *step == steps {
                bar.finish_and_clear();
            }
        }
    }
}
