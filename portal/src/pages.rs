//! The portal's pages, as HTML: the shell every page shares, sign-in, the pipeline board and a
//! promotion's confirmation.

pub mod board;
pub mod layout;
pub mod login;
pub mod promote;
