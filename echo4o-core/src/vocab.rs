//! Names the benchmarks fix, defined once for every crate: GenEval's colors and tasks,
//! GenEval++'s tags, and the image file extensions the folder readers accept.

/// GenEval's ten colors, in the official order (its CLIP color classifier's classes).
pub const GENEVAL_COLORS: [&str; 10] = [
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white",
];

/// GenEval's six tasks in canonical order (the official results header `SO TO CT CL POS ATTR`).
pub const GENEVAL_TASKS: [&str; 6] = [
    "single_object",
    "two_object",
    "counting",
    "colors",
    "position",
    "color_attr",
];

/// GenEval++'s seven tags.
pub const GENEVAL_PP_TAGS: [&str; 7] = [
    "color_attr",
    "spatial_count_attr",
    "color_spatial_attr",
    "color_count_attr",
    "multi_object_count_attr",
    "size_spatial_attr",
    "counting",
];

/// The image file extensions read from folders, in order of preference (lower case; readers
/// also try the upper-case forms).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];
