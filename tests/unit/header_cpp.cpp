// Compiles the public header as C++17 with -Wall -Wextra -pedantic -Werror.
#include "llm.h"

int main()
{
    llm_model_params mp;
    llm_model_params_init(&mp);
    llm_context_params cp;
    llm_context_params_init(&cp);
    llm_sampler_params sp;
    llm_sampler_params_init(&sp);
    llm_batch b;
    llm_batch_init(&b);
    return llm_version_number() == LLM_VERSION_NUMBER ? 0 : 1;
}
