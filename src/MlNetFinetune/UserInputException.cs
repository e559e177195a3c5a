namespace MlNetFinetune;

/// <summary>
/// A problem with what the user asked for (a missing folder, a bad option, a foreign model file).
/// The programs print its message on one line and exit with code 2; it never carries a stack trace to the user.
/// </summary>
public sealed class UserInputException(string message) : Exception(message);
