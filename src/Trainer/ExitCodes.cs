namespace MlNetFinetune.Trainer;

/// <summary>The command-line contract's exit codes.</summary>
public static class ExitCodes
{
    public const int Success = 0;
    public const int Failure = 1;
    public const int UserError = 2;
    public const int Interrupted = 130;
}
