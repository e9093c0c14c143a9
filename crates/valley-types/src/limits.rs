//! Named limits, in one place. Each is S3's own limit unless its doc says otherwise;
//! exceeding one is a client error, never a panic.

/// Longest object key, in UTF-8 bytes.
pub const KEY_LEN_BYTES_MAX: usize = 1024;
/// Total size of user metadata (`x-amz-meta-*` names plus values), in bytes.
pub const USER_METADATA_BYTES_MAX: usize = 2 * 1024;
/// Highest part number in a multipart upload; part numbers start at 1.
pub const PART_NUMBER_MAX: i32 = 10_000;
/// Smallest size of every part but the last in a completed multipart upload.
pub const PART_SIZE_BYTES_MIN: u64 = 5 * 1024 * 1024;
/// Largest size of one part, and of one single-request PUT.
pub const PART_SIZE_BYTES_MAX: u64 = 5 * 1024 * 1024 * 1024;
/// Largest object.
pub const OBJECT_SIZE_BYTES_MAX: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// Most keys one ListObjects page returns, whatever `max-keys` asks for.
pub const LIST_KEYS_MAX: usize = 1000;
/// Most keys one DeleteObjects request may name.
pub const DELETE_OBJECTS_KEYS_MAX: usize = 1000;
/// Most tags on one object.
pub const OBJECT_TAGS_MAX: usize = 10;
/// Most tags on one bucket.
pub const BUCKET_TAGS_MAX: usize = 50;
/// Longest tag key, in Unicode characters.
pub const TAG_KEY_CHARS_MAX: usize = 128;
/// Longest tag value, in Unicode characters.
pub const TAG_VALUE_CHARS_MAX: usize = 256;
/// Objects up to this size are kept inline in the metadata store (Valley's own choice: one
/// fsync'd commit instead of a file, a file fsync and a directory fsync).
pub const INLINE_OBJECT_BYTES_MAX: u64 = 16 * 1024;
/// Size of XML request bodies s3s will buffer (Valley's own choice; S3's largest XML body,
/// a 1,000-key DeleteObjects, is well under it).
pub const XML_BODY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Largest file a browser form upload (POST Object) may carry. s3s reads a form's file into
/// memory before the operation sees it (to check the form's policy), so this is kept small
/// (Valley's own choice; S3 allows 5 GB): larger objects go by PUT or multipart upload, which
/// stream.
pub const FORM_FILE_BYTES_MAX: u64 = 32 * 1024 * 1024;
/// A form's other fields together (its policy, key, metadata...): S3 documents no limit; a
/// policy document is a few KiB.
pub const FORM_FIELDS_BYTES_MAX: usize = 256 * 1024;
/// Parts of a form (its fields and its file): a browser form has a dozen.
pub const FORM_PARTS_MAX: usize = 100;
/// Form uploads read into memory at once per hub: with [`FORM_FILE_BYTES_MAX`], what all of
/// them can hold is bounded (128 MiB) however many clients post.
pub const FORM_UPLOADS_IN_FLIGHT_MAX: usize = 4;
