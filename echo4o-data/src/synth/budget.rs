//! Money: the [`Prices`] a job counts cost with, and the reservations that keep concurrent
//! requests under a cost cap.

use serde::{Deserialize, Serialize};

use echo4o_core::Usage;
use echo4o_core::openai::images::ImageUsage;

use crate::Result;

/// Prices in US dollars, per million tokens unless said otherwise; cost is computed from each
/// reply's `usage`. Record `version` (where the prices came from, and when).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prices {
    /// Image API text input.
    pub text_input: f64,
    /// Image API image input (references).
    pub image_input: f64,
    /// Image API output (the image tokens).
    pub image_output: f64,
    /// Per image, added to every image reply's token cost: the whole cost for servers that
    /// bill per image or send no `usage` (local servers), 0 for token-billed APIs.
    pub per_image: f64,
    /// Chat model input (judge, rewriter).
    pub chat_input: f64,
    /// Chat model output.
    pub chat_output: f64,
    /// Where these prices come from.
    pub version: String,
}

impl Prices {
    /// Checks that every price is a finite number, not negative (a negative price would let the
    /// cost cap be overspent by any amount).
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("text_input", self.text_input),
            ("image_input", self.image_input),
            ("image_output", self.image_output),
            ("per_image", self.per_image),
            ("chat_input", self.chat_input),
            ("chat_output", self.chat_output),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(echo4o_core::Error::invalid(
                    format!("prices.{field}"),
                    format!("{v} must be a finite number, not negative"),
                )
                .into());
            }
        }
        Ok(())
    }

    /// The cost of one image reply: `per_image` plus the token cost of its `usage`, if any.
    pub fn image_cost(&self, usage: Option<&ImageUsage>) -> f64 {
        self.per_image
            + usage.map_or(0.0, |u| {
                (u.text_input_tokens as f64 * self.text_input
                    + u.image_input_tokens as f64 * self.image_input
                    + u.output_tokens as f64 * self.image_output)
                    / 1e6
            })
    }

    /// The cost of one chat reply.
    pub fn chat_cost(&self, usage: Option<&Usage>) -> f64 {
        usage.map_or(0.0, |u| {
            (u.prompt_tokens as f64 * self.chat_input
                + u.completion_tokens as f64 * self.chat_output)
                / 1e6
        })
    }
}

/// Money promised to requests in flight against a cost cap.
///
/// A request is only started when the money spent, the money reserved by requests in flight and
/// its own estimate stay within the cap, so concurrency can never overspend: four $100 images in
/// flight against a $150 cap would otherwise all be paid. The estimate is `per_image` plus the
/// largest token cost seen so far; while no cost is known and there is no `per_image`, one
/// request at a time is in flight.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    reserved: f64,
    in_flight: usize,
    largest_token_cost: f64,
}

impl Budget {
    /// A budget whose first estimate is `largest_token_cost` (from earlier runs' records).
    pub(crate) fn starting_at(largest_token_cost: f64) -> Self {
        Budget {
            largest_token_cost,
            ..Budget::default()
        }
    }

    /// Reserves one image's estimate if `spent` plus every reservation plus it stays within
    /// `max`; returns the amount reserved.
    pub(crate) fn reserve(&mut self, spent: f64, per_image: f64, max: f64) -> Option<f64> {
        let estimate = per_image + self.largest_token_cost;
        let unknown = estimate <= 0.0;
        if unknown && self.in_flight > 0 {
            return None;
        }
        if spent + self.reserved + estimate > max || (unknown && spent >= max) {
            return None;
        }
        self.reserved += estimate;
        self.in_flight += 1;
        Some(estimate)
    }

    /// Releases a reservation; `token_cost` is what the request's tokens really cost.
    pub(crate) fn release(&mut self, reserved: f64, token_cost: Option<f64>) {
        self.reserved = (self.reserved - reserved).max(0.0);
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(c) = token_cost {
            self.largest_token_cost = self.largest_token_cost.max(c);
        }
    }

    /// Requests in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_keep_concurrent_requests_under_the_cap() {
        let mut b = Budget::default();
        // $100 per image, $150 cap: one in flight, the second must wait.
        let first = b.reserve(0.0, 100.0, 150.0).unwrap();
        assert_eq!(b.reserve(0.0, 100.0, 150.0), None);
        b.release(first, Some(0.0));
        // Spent $100: a second $100 image would exceed $150.
        assert_eq!(b.reserve(100.0, 100.0, 150.0), None);
        // Unknown cost: one at a time, and none once the cap is reached.
        let mut b = Budget::default();
        let r = b.reserve(0.0, 0.0, 1.0).unwrap();
        assert_eq!(b.reserve(0.0, 0.0, 1.0), None);
        b.release(r, Some(0.4));
        assert!(b.reserve(0.4, 0.0, 1.0).is_some());
        assert_eq!(
            b.reserve(0.8, 0.0, 1.0),
            None,
            "0.8 spent + 0.4 reserved + 0.4 > 1"
        );
    }
}
