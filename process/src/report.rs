//! [`Report`]: how every binary prints the error it exits with, without saying a cause twice.

use std::error::Error;
use std::fmt;

/// The error a binary's `main` returns (`fn main() -> Result<(), Report>`). Printed as the error
/// and the chain of its causes, leaving out every cause whose text an earlier message already
/// contains: many errors quote their source in their own message ("cannot connect to RabbitMQ
/// at …: Connection refused"), and the cause would otherwise be printed again.
pub struct Report(Box<dyn Error + Send + Sync + 'static>);

impl<E> From<E> for Report
where
    E: Into<Box<dyn Error + Send + Sync + 'static>>,
{
    fn from(error: E) -> Self {
        Report(error.into())
    }
}

impl Report {
    /// The messages to print: the error's, then each cause not already said.
    pub fn messages(&self) -> Vec<String> {
        let mut messages: Vec<String> = vec![self.0.to_string()];
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            let said = messages.iter().any(|m| m.contains(text.trim()));
            if !said && !text.trim().is_empty() {
                messages.push(text);
            }
            source = cause.source();
        }
        messages
    }
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let messages = self.messages();
        write!(f, "{}", messages[0])?;
        match &messages[1..] {
            [] => Ok(()),
            [cause] => write!(f, "\n\nCaused by: {cause}"),
            causes => {
                write!(f, "\n\nCaused by:")?;
                for (i, cause) in causes.iter().enumerate() {
                    write!(f, "\n  {i}: {cause}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.messages().join(": "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Io;
    impl fmt::Display for Io {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Connection refused (os error 111)")
        }
    }
    impl Error for Io {}

    #[derive(Debug)]
    struct Connect(Io);
    impl fmt::Display for Connect {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "cannot connect to RabbitMQ: {}", self.0)
        }
    }
    impl Error for Connect {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[derive(Debug)]
    struct Startup(Connect);
    impl fmt::Display for Startup {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("the worker could not start")
        }
    }
    impl Error for Startup {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_already_quoted_is_not_printed_again() {
        let report = Report::from(Startup(Connect(Io)));
        assert_eq!(
            report.messages(),
            [
                "the worker could not start",
                "cannot connect to RabbitMQ: Connection refused (os error 111)"
            ]
        );
        assert_eq!(
            format!("{report:?}"),
            "the worker could not start\n\nCaused by: cannot connect to RabbitMQ: Connection refused (os error 111)"
        );
    }
}
