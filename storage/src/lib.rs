//! Revision blobs in S3 (being written).
