//! What a user typed (a flag, a config value) and why it is not accepted: the one error type of
//! every parser of user input, so each message quotes the input and says what was expected.

/// "`fast` is not a duration ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` {problem}")]
pub struct BadInput {
    pub input: String,
    pub problem: String,
}

impl BadInput {
    pub fn new(input: &str, problem: impl Into<String>) -> BadInput {
        BadInput { input: input.to_string(), problem: problem.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_quotes_the_input() {
        assert_eq!(BadInput::new("fast", "is not a duration").to_string(), "`fast` is not a duration");
    }
}
