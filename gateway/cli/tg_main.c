/* The taskgate command's entry point; the commands live in tg_cli.c. */
int tg_cli_main(int argc, char **argv);

int main(int argc, char **argv)
{
    return tg_cli_main(argc, argv);
}
