use crate::Error;
